"""A machine that went down hard comes back with one run.

The lab machine keeps /run across restarts, and a killed daemon leaves its pid
file and socket behind: Debian's init scripts refuse to start some daemons
over them (fail2ban's did, on the CI machine). Here every lab daemon in this
machine's namespaces (not the multi-host containers') is killed with SIGKILL,
with all its children, as a power cut would; one `sop apply` must bring every
one of them back and pass its post-checks, and each must answer.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time

from .conftest import VENV_BIN, run

DAEMONS = re.compile(r"^(rspamd|redis-server|nginx|php-fpm|dovecot|master|named|opendkim"
                     r"|fail2ban-server|sshd)")
# What answers where once the run is over (the lab listens on loopback).
PORTS = {"named": 53, "postfix": 25, "dovecot": 143, "nginx": 80, "rspamd": 11332,
         "redis": 6379, "opendkim": 8891, "sshd": 22}


def _ours(pid: str) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt")
    except OSError:
        return False


def _name(pid: str) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = f.read().split(b"\0")
    with open(f"/proc/{pid}/comm") as f:
        comm = f.read().strip()
    if b"fail2ban-server" in b" ".join(argv):
        return "fail2ban-server"
    if comm == "sshd" and b"@" in argv[0]:
        return "sshd-session"  # somebody's session, not the daemon
    return comm


def lab_daemons() -> dict[int, str]:
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if _ours(pid) and DAEMONS.match(name := _name(pid)):
                out[int(pid)] = name
        except OSError:
            continue
    return out


def with_descendants(roots: set[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        children.setdefault(ppid, []).append(int(pid))
    todo, seen = list(roots), set()
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo += children.get(pid, [])
    return seen


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            return True
    except OSError:
        return False


def test_every_daemon_killed_at_once_is_brought_back_by_one_run(lab_apply):
    before = lab_daemons()
    assert set(before.values()) >= {"named", "master", "dovecot", "nginx", "rspamd",
                                    "redis-server", "opendkim", "fail2ban-server", "sshd"}
    # As a power cut: nothing of a daemon may act after the first kill. Killed
    # one by one, a master still alive starts new workers for the ones already
    # dead, and those keep the ports. So every process is stopped first, then killed.
    doomed = with_descendants(set(before))
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for pid in doomed:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 20
    while lab_daemons() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert lab_daemons() == {}, "some daemons survived SIGKILL"
    assert not any(answers(port) for port in PORTS.values())
    assert os.path.exists("/run/fail2ban/fail2ban.sock"), "the hard stop left its socket"

    result = run([str(VENV_BIN / "sop"), "-i", "inventory/lab", "apply"])
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    back = set(lab_daemons().values())
    assert back >= set(before.values()) - {"sshd-session"}, set(before.values()) - back
    silent = [name for name, port in PORTS.items() if not answers(port)]
    assert silent == [], silent
    ping = subprocess.run(["fail2ban-client", "ping"], capture_output=True, text=True)
    assert "pong" in ping.stdout
