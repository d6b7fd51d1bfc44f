"""The production rehearsal's machinery: the regency's repository on a forge,
its production inventory with only the placeholders replaced, an ACME server,
and the workflows run as the forge and the controller's runner run them.

- **The forge** is a bare git repository under the suite's state, made from
  this checkout (tracked and new files, as they are now). Its
  ``inventory/production`` is the repository's own, with what its comments
  call placeholders replaced by the rehearsal's: the 192.0.2.x addresses by
  the containers', the controller's state paths (``/var/lib/sop``,
  ``/etc/sop``) by folders of the suite, the ACME directory by pebble's, and
  the CA the post-checks trust by pebble's root. ``group_vars/all/vault.yml``
  holds the ACME key's secret, encrypted with the controller's vault
  password. Nothing else is changed; ``DEVIATIONS`` lists the one setting
  this kernel cannot honour, and the backup host is left out
  (``WITHOUT_HOSTS``): its client on the controller would be this machine's,
  which the lab's own backups (tests/integration/test_backup.py) use at the
  same time. Backups are tested there, against the lab.
- **The controller** is this machine, on the bridge's address (the host of
  the inventory's ``controller`` group). The servers are the four containers;
  Ansible logs in as ``sop`` with sudo, made by ``playbooks/prepare-servers``.
- **pebble** (Debian's package) is the ACME server: its own listener
  certificate from a CA made here, which the containers trust (as servers
  trust Let's Encrypt's), resolving names through ns1 and validating HTTP-01
  on port 80, as a public CA does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import yaml

from .containers import CONTROLLER, STATE

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
PRODUCTION = STATE / "production"
FORGE = PRODUCTION / "forge.git"
CONTROLLER_STATE = PRODUCTION / "var-lib-sop"
CONTROLLER_ETC = PRODUCTION / "etc-sop"
PEBBLE_DIR = PRODUCTION / "pebble"
PEBBLE_ROOT = PEBBLE_DIR / "issuing-root.pem"
SUMMARY = PRODUCTION / "step-summary.md"
# The one production value this machine cannot run with: hard quotas need
# the kernel's quota support (CONFIG_QUOTA), which it lacks (lab notes).
# A test runs the production value first and sees the run stop on it.
DEVIATIONS = {"sftp_hosting_quota": "measure"}
WITHOUT_HOSTS = {"backup.sumbabaratdayakab.go.id": "backup"}


def sh(*argv, check=True, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kw)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))}: exit {result.returncode}\n"
                           f"{result.stdout}\n{result.stderr}")
    return result


def git(repo: Path, *args, **kw) -> str:
    return sh("git", "-C", repo, "-c", "user.name=Rehearsal", "-c",
              "user.email=rehearsal@example.invalid", *args, **kw).stdout


# --- pebble -------------------------------------------------------------------------

class Pebble:
    """Debian's pebble on the bridge address: ACME on 14000, management on 15000."""

    def __init__(self, dns_server: str):
        self.dns_server = dns_server
        self.proc: subprocess.Popen | None = None
        self.listener_ca = PEBBLE_DIR / "listener-ca.pem"

    @property
    def directory(self) -> str:
        return f"https://{CONTROLLER}:14000/dir"

    def start(self) -> None:
        PEBBLE_DIR.mkdir(parents=True, exist_ok=True)
        d = PEBBLE_DIR
        sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
           "-nodes", "-days", "2", "-subj", "/CN=Rehearsal ACME listener CA",
           "-keyout", d / "listener-ca.key", "-out", self.listener_ca)
        sh("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
           "-subj", f"/CN={CONTROLLER}", "-keyout", d / "listener.key", "-out", d / "listener.csr")
        (d / "ext.cnf").write_text(f"subjectAltName=IP:{CONTROLLER}\n")
        sh("openssl", "x509", "-req", "-in", d / "listener.csr", "-CA", self.listener_ca,
           "-CAkey", d / "listener-ca.key", "-CAcreateserial", "-days", "2",
           "-extfile", d / "ext.cnf", "-out", d / "listener.pem")
        config = {"pebble": {
            "listenAddress": f"{CONTROLLER}:14000",
            "managementListenAddress": f"{CONTROLLER}:15000",
            "certificate": str(d / "listener.pem"), "privateKey": str(d / "listener.key"),
            "httpPort": 80, "tlsPort": 443, "ocspResponderURL": "",
            "externalAccountBindingRequired": False}}
        (d / "config.json").write_text(json.dumps(config))
        env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
        log = (d / "pebble.log").open("ab")
        self.proc = subprocess.Popen(
            ["pebble", "-config", str(d / "config.json"), "-dnsserver", f"{self.dns_server}:53"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        log.close()
        ctx = ssl.create_default_context(cafile=str(self.listener_ca))
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"https://{CONTROLLER}:15000/roots/0",
                                            context=ctx, timeout=3) as resp:
                    PEBBLE_ROOT.write_bytes(resp.read())
                return
            except OSError as exc:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    log = (d / "pebble.log").read_text()
                    raise RuntimeError(f"pebble did not start: {log}") from exc
                time.sleep(0.3)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)


# --- the forge: the regency's repository ---------------------------------------------

def production_inventory(folder: Path, addresses: dict[str, str], acme_secret: str,
                         vault_password: str) -> None:
    """inventory/production of this checkout with the placeholders replaced."""
    from ansible.parsing.vault import VaultLib, VaultSecret

    src = REPO / "inventory" / "production"
    for path in sorted(src.rglob("*")):
        if path.is_dir():
            continue
        text = path.read_text()
        for placeholder, value in addresses.items():
            text = re.sub(rf"\b{re.escape(placeholder)}\b", value, text)
        text = (text.replace("/var/lib/sop", str(CONTROLLER_STATE))
                    .replace("/etc/sop/", f"{CONTROLLER_ETC}/")
                    .replace("https://acme-v02.api.letsencrypt.org/directory",
                             f"https://{CONTROLLER}:14000/dir"))
        text = re.sub(r'^(\s*ca_file:) ""', rf'\1 "{PEBBLE_ROOT}"', text, flags=re.M)
        for setting, value in DEVIATIONS.items():
            text = re.sub(rf"^{setting}: .*$", f"{setting}: {value}  # rehearsal, see DEVIATIONS",
                          text, flags=re.M)
        if path.name == "hosts.yml":
            text = _without_hosts(text)
        dest = folder / path.relative_to(src)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text)
    vault = VaultLib([("default", VaultSecret(vault_password.encode()))])
    plain = f"---\nsop_acme_tsig_secret: {acme_secret}\n"
    (folder / "group_vars" / "all" / "vault.yml").write_bytes(vault.encrypt(plain))


def _without_hosts(text: str) -> str:
    """hosts.yml without the hosts of WITHOUT_HOSTS and their groups."""
    import yaml

    inventory = yaml.safe_load(text)
    for host, group in WITHOUT_HOSTS.items():
        inventory["all"]["hosts"].pop(host)
        inventory["all"]["children"].pop(group)
    return "---\n" + yaml.safe_dump(inventory, sort_keys=False)


def make_forge(addresses: dict[str, str], acme_secret: str, vault_password: str) -> None:
    """A bare repository whose main is this checkout, production inventory filled in."""
    work = PRODUCTION / "forge-work"
    shutil.rmtree(work, ignore_errors=True)
    files = sh("git", "-C", REPO, "ls-files", "-z", "--cached", "--others",
               "--exclude-standard").stdout.split("\0")
    for name in filter(None, files):
        src = REPO / name
        if not src.exists():  # deleted in the work tree, not yet committed
            continue
        dest = work / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest, follow_symlinks=False)
    shutil.rmtree(work / "inventory" / "production")
    production_inventory(work / "inventory" / "production", addresses, acme_secret,
                         vault_password)
    git(work, "init", "-q", "-b", "main")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "The regency's repository: production inventory filled in")
    sh("git", "clone", "-q", "--bare", work, FORGE)


def checkout(name: str, ref: str = "main") -> Path:
    """A fresh clone of the forge, as a runner's workspace."""
    path = PRODUCTION / name
    shutil.rmtree(path, ignore_errors=True)
    sh("git", "clone", "-q", "--branch", ref, FORGE, path)
    return path


def push_requests(branch: str, files: dict[str, str], message: str, base: str = "main",
                  remove: tuple[str, ...] = ()) -> None:
    """A commit on ``branch`` (from ``base``) adding or removing request files."""
    work = checkout(f"author-{branch.replace('/', '-')}", base)
    if branch != base:
        git(work, "switch", "-q", "-c", branch)
    for name, text in files.items():
        (work / "requests" / name).write_text(text)
    for name in remove:
        (work / "requests" / name).unlink()
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", message)
    git(work, "push", "-q", "origin", branch)


def merge(branch: str) -> None:
    work = checkout("merger")
    git(work, "fetch", "-q", "origin", branch)
    git(work, "merge", "-q", "--no-ff", "-m", f"Merge {branch}", "FETCH_HEAD")
    git(work, "push", "-q", "origin", "main")


# --- the workflows, step by step ----------------------------------------------------

def workflow_steps(name: str) -> list[dict]:
    doc = yaml.safe_load((REPO / ".github" / "workflows" / name).read_text())
    (job,) = doc["jobs"].values()
    return [step for step in job["steps"] if "run" in step]


def controller_env(**extra) -> dict:
    """The runner's environment on the controller: the `sop` user's SSH key and
    known hosts (here: the suite's), no vault password in it."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SOP_", "ANSIBLE_", "GITHUB_"))}
    env.update({
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(PRODUCTION / "home"),
        "ANSIBLE_PRIVATE_KEY_FILE": str(STATE / "id_ed25519"),
        "ANSIBLE_SSH_COMMON_ARGS": (f"-o UserKnownHostsFile={STATE / 'known_hosts'} "
                                    "-o StrictHostKeyChecking=yes"),
        "GITHUB_STEP_SUMMARY": str(SUMMARY),
        # The controller's venv (scripts/controller-apply): the suite's own.
        "SOP_VENV": str(REPO / ".venv"),
        "CI": "true",
    })
    env.update(extra)
    return env


def run_step(step: dict, cwd: Path, env: dict,
             timeout: float = 1500) -> subprocess.CompletedProcess:
    step_env = {**env, **{k: str(v) for k, v in (step.get("env") or {}).items()
                          if "${{" not in str(v)}}
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", step["run"]], cwd=cwd,
                          env=step_env, capture_output=True, text=True, timeout=timeout)


def start_step(step: dict, cwd: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(["bash", "-e", "-o", "pipefail", "-c", step["run"]], cwd=cwd,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (ansible-runner starts ansible-playbook in
    a session of its own, so a process group does not hold them all)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(pid: int) -> None:
    """kill -9 of a process and everything it started."""
    for victim in [pid, *descendants(pid)]:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass


def latest_record() -> dict:
    reports = sorted((CONTROLLER_STATE / "reports").glob("*.json"),
                     key=lambda p: p.stat().st_mtime)
    return json.loads(reports[-1].read_text()) if reports else {}
