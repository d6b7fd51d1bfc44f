"""Several Debian hosts on this machine: booted systemd-nspawn containers.

Each container boots systemd from an overlay over the cached image
(scripts/multihost-image), in a network namespace of its own joined to a
bridge on this machine. The bridge and the containers use 10.231.0.0/24,
which exists only on the interfaces made here; the containers have no
default route, so nothing they run can reach any other address. Everything
lives under /var/lib/sop-multihost and is removed by `Network.destroy()`
(also on the next start, when a previous run was killed).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

STATE = Path("/var/lib/sop-multihost")
BRIDGE = "sopmh0"
PREFIX = "10.231.0"
CONTROLLER = f"{PREFIX}.1"
NETNS_PREFIX = "sopmh-"
# The cgroup hierarchies systemd (inside a container) uses on this machine:
# cgroup v1's name=systemd and the unified (v2) one of the hybrid layout; on a
# pure v2 machine /sys/fs/cgroup itself.
CGROUP_HIERARCHIES = [Path("/sys/fs/cgroup/systemd"), Path("/sys/fs/cgroup/unified")] \
    if Path("/sys/fs/cgroup/systemd").is_dir() else [Path("/sys/fs/cgroup")]
# The image has every daemon installed; a host runs only those of its roles,
# the others are masked (a play that targets the wrong host then fails).
DAEMON_UNITS = {
    "named": ["named.service"],
    "postfix": ["postfix.service", "postfix@.service"],
    "dovecot": ["dovecot.service"],
    "nginx": ["nginx.service"],
}


def sh(*argv: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(list(argv), capture_output=True, text=True, **kw)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {result.returncode}: "
                           f"{result.stderr.strip() or result.stdout.strip()}")
    return result


def _mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[1] == target for line in mounts)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _link_exists(name: str) -> bool:
    return sh("ip", "link", "show", "dev", name, check=False).returncode == 0


@dataclass
class Container:
    name: str
    address: str
    base: Path
    ssh_key: Path
    known_hosts: Path
    hosts_file: str = ""
    daemons: tuple[str, ...] = ()
    resolver: str = ""
    pid: int | None = None

    @property
    def dir(self) -> Path:
        return STATE / self.name

    @property
    def root(self) -> Path:
        return self.dir / "root"

    @property
    def netns(self) -> str:
        return NETNS_PREFIX + self.name

    @property
    def veth(self) -> str:
        """The bridge side of the container's cable (host0 is the other end)."""
        return NETNS_PREFIX + self.name

    # --- lifecycle -----------------------------------------------------------
    def create(self) -> None:
        """File system and network of a new host (not booted yet)."""
        for sub in ("upper", "work", "root"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        sh("mount", "-t", "overlay", "overlay", "-o",
           f"lowerdir={self.base},upperdir={self.dir / 'upper'},workdir={self.dir / 'work'}",
           str(self.root))
        self._personalise()
        sh("ip", "netns", "add", self.netns)
        sh("ip", "link", "add", self.veth, "type", "veth", "peer", "name", "host0",
           "netns", self.netns)
        sh("ip", "link", "set", self.veth, "master", BRIDGE, "up")
        sh("ip", "-n", self.netns, "addr", "add", f"{self.address}/24", "dev", "host0")
        sh("ip", "-n", self.netns, "link", "set", "host0", "up")
        sh("ip", "-n", self.netns, "link", "set", "lo", "up")

    def _personalise(self) -> None:
        """Host name, /etc/hosts, the test's SSH key and fresh host keys."""
        etc = self.root / "etc"
        (etc / "hostname").write_text(self.name + "\n")
        (etc / "hosts").write_text(self.hosts_file)
        # Like a server's: a resolver to ask (the test network's name server,
        # which answers for the zone and refuses the rest; nothing is outside).
        if self.resolver:
            (etc / "resolv.conf").write_text(f"nameserver {self.resolver}\n")
        ssh_dir = self.root / "root" / ".ssh"
        ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        auth = ssh_dir / "authorized_keys"
        auth.write_text(Path(f"{self.ssh_key}.pub").read_text())
        auth.chmod(0o600)
        for daemon, units in DAEMON_UNITS.items():
            if daemon not in self.daemons:
                for unit in units:
                    (etc / "systemd" / "system" / unit).symlink_to("/dev/null")
        host_key = etc / "ssh" / "ssh_host_ed25519_key"
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", self.name, "-f", str(host_key))
        public = Path(f"{host_key}.pub").read_text().split()
        with self.known_hosts.open("a") as known:
            known.write(f"{self.address} {public[0]} {public[1]}\n")

    @property
    def cgroups(self) -> list[Path]:
        """The container's own cgroup in each hierarchy systemd uses here.

        With --keep-unit and no systemd on this machine, systemd-nspawn leaves
        the container in the cgroup it was started from. Four containers
        started from one cgroup share it: their systemd instances then create
        and remove the same /system.slice/<unit> paths, and a unit started in
        one while another stops it fails with 219/CGROUP (seen: user sessions
        never permitted, PHP-FPM failing to reload). Each gets its own."""
        return [path / f"{NETNS_PREFIX}{self.name}" for path in CGROUP_HIERARCHIES
                if path.is_dir()]

    def _remove_cgroups(self) -> None:
        """Empty once the container has stopped: removed deepest first."""
        for group in self.cgroups:
            if group.is_dir():
                for sub in sorted((p for p in group.rglob("*") if p.is_dir()),
                                  key=lambda p: len(p.parts), reverse=True):
                    with contextlib.suppress(OSError):
                        sub.rmdir()
                with contextlib.suppress(OSError):
                    group.rmdir()

    def boot(self, timeout: float = 90.0) -> None:
        """Boot systemd in the container and wait until SSH logs in."""
        self._remove_cgroups()  # left by an earlier boot of this name
        for group in self.cgroups:
            group.mkdir(exist_ok=True)
        log = (self.dir / "console.log").open("ab")
        # A shell moves itself into the container's cgroups, then becomes nspawn.
        enter = ["sh", "-c", 'while [ "$1" != -- ]; do echo $$ > "$1/cgroup.procs"; shift; done; '
                 'shift; exec "$@"', "sh", *map(str, self.cgroups), "--"]
        proc = subprocess.Popen(
            [*enter, "systemd-nspawn", "--quiet", "--register=no", "--keep-unit",
             "--machine", self.name, "--directory", str(self.root), "--boot",
             f"--network-namespace-path=/run/netns/{self.netns}",
             "--console=passive", "--resolv-conf=off", "--timezone=off"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )
        log.close()
        self.pid = proc.pid
        (self.dir / "nspawn.pid").write_text(f"{proc.pid}\n")
        sh("ip", "link", "set", self.veth, "up")
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{self.name}: systemd-nspawn exited with {proc.returncode}; "
                                   f"see {self.dir / 'console.log'}")
            if self._ssh_ready():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: no SSH login within {timeout:.0f} s; "
                                   f"see {self.dir / 'console.log'}")
            time.sleep(0.5)

    def _ssh_ready(self) -> bool:
        try:
            with socket.create_connection((self.address, 22), timeout=1):
                pass
        except OSError:
            return False
        # Logged in, systemd has finished starting the units it starts at boot,
        # and accounts other than root may log in (pam_nologin's /run/nologin
        # is gone: the production inventory logs in as `sop`).
        result = self.ssh("systemctl is-system-running --wait; test ! -e /run/nologin && echo open",
                          check=False, timeout=60)
        state, _, gate = result.stdout.strip().partition("\n")
        return state in ("running", "degraded") and gate == "open"

    def ssh(self, command: str, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess:
        return sh("ssh", *self.ssh_options(), f"root@{self.address}", command,
                  check=check, timeout=timeout)

    def ssh_options(self) -> list[str]:
        return ["-i", str(self.ssh_key), "-o", "BatchMode=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=5"]

    def halt(self, timeout: float = 30.0) -> None:
        """Shut the container down cleanly (systemd-nspawn halts it on SIGTERM)."""
        pid = self.pid or _read_pid(self.dir / "nspawn.pid")
        if pid and _alive(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _alive(pid) and time.monotonic() < deadline:
                _reap(pid)
                time.sleep(0.2)
            if _alive(pid):
                os.killpg(pid, signal.SIGKILL)
            _reap(pid)
        self.pid = None
        (self.dir / "nspawn.pid").unlink(missing_ok=True)

    def unplug(self) -> None:
        """The host is down: stopped, and its cable out (connections time out)."""
        self.halt()
        sh("ip", "link", "set", self.veth, "down")

    def plug_in_and_boot(self) -> None:
        self.boot()

    @contextlib.contextmanager
    def deaf_to_dns_from(self, peer: str):
        """Packets from peer to this host's port 53 are dropped, over UDP and TCP.

        A NOTIFY lost on the way, while this host stays up and can still ask
        peer itself (its replies come from port 53, not to it). The rule lives in
        the host's network namespace, which only these tests created.
        """
        table = "sop_multihost_test"
        rules = (f"table inet {table} {{\n"
                 f"  chain input {{\n"
                 f"    type filter hook input priority filter; policy accept;\n"
                 f"    ip saddr {peer} meta l4proto {{ tcp, udp }} th dport 53 drop\n"
                 f"  }}\n"
                 f"}}\n")
        sh("ip", "netns", "exec", self.netns, "nft", "-f", "-", input=rules)
        try:
            yield
        finally:
            sh("ip", "netns", "exec", self.netns, "nft", "delete", "table", "inet", table,
               check=False)

    def destroy(self) -> None:
        self.halt()
        self._remove_cgroups()
        if _mounted(self.root):
            sh("umount", str(self.root), check=False)
            if _mounted(self.root):
                sh("umount", "-l", str(self.root))
        if Path(f"/run/netns/{self.netns}").exists():
            sh("ip", "netns", "del", self.netns)
        if _link_exists(self.veth):
            sh("ip", "link", "del", self.veth, check=False)  # gone with the namespace
        shutil.rmtree(self.dir, ignore_errors=True)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _reap(pid: int) -> None:
    """Collect the exit status of our own child (no zombie left)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


@dataclass
class Network:
    """The bridge, the controller's address on it, and the containers."""

    base: Path
    hosts: dict[str, int]  # name -> last octet
    domain: str = ""
    daemons: dict[str, tuple[str, ...]] = field(default_factory=dict)  # name -> daemons run
    containers: dict[str, Container] = field(default_factory=dict)

    def create(self) -> None:
        self.destroy()  # leftovers of a run that was killed or kept
        STATE.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = STATE / "id_ed25519"
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "sop-multihost", "-f", str(key))
        known = STATE / "known_hosts"
        known.write_text("")
        hosts_file = "127.0.0.1\tlocalhost\n" + "".join(
            f"{PREFIX}.{octet}\t{name}.{self.domain} {name}\n" if self.domain else
            f"{PREFIX}.{octet}\t{name}\n"
            for name, octet in self.hosts.items()
        )
        sh("ip", "link", "add", BRIDGE, "type", "bridge")
        sh("ip", "addr", "add", f"{CONTROLLER}/24", "dev", BRIDGE)
        sh("ip", "link", "set", BRIDGE, "up")
        for name, octet in self.hosts.items():
            resolver = f"{PREFIX}.{self.hosts['ns1']}" if "ns1" in self.hosts else ""
            c = Container(name, f"{PREFIX}.{octet}", self.base, key, known, hosts_file,
                          self.daemons.get(name, ()), resolver)
            self.containers[name] = c
            c.create()

    def boot(self) -> None:
        """Boot every container; they come up side by side."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(self.containers)) as pool:
            list(pool.map(lambda c: c.boot(), self.containers.values()))

    def destroy(self) -> None:
        names = set(self.hosts)
        if STATE.is_dir():
            names |= {p.name for p in STATE.iterdir() if (p / "root").is_dir()}
        from concurrent.futures import ThreadPoolExecutor

        doomed = [self.containers.get(name) or Container(name, "", self.base, Path(), Path())
                  for name in sorted(names)]
        if doomed:
            with ThreadPoolExecutor(len(doomed)) as pool:
                list(pool.map(lambda c: c.destroy(), doomed))
        self.containers.clear()
        if _link_exists(BRIDGE):
            sh("ip", "link", "del", BRIDGE)
        # Keys, inventory, requests and the test register go too, once no
        # container file system is mounted below.
        with open("/proc/self/mounts") as mounts:
            busy = [line.split()[1] for line in mounts
                    if line.split()[1].startswith(f"{STATE}/")]
        if busy:
            raise RuntimeError(f"still mounted, not removed: {', '.join(busy)}")
        shutil.rmtree(STATE, ignore_errors=True)
