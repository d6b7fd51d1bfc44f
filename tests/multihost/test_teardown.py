"""The container environment leaves nothing behind on this machine."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .conftest import image
from .containers import BRIDGE, NETNS_PREFIX, STATE, Network


def leftovers() -> list[str]:
    found = []
    with open("/proc/self/mounts") as mounts:
        found += [f"mount {line.split()[1]}" for line in mounts if str(STATE) in line]
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [f"netns {n.split()[0]}" for n in netns.splitlines() if n.startswith(NETNS_PREFIX)]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    found += [f"link {line.split(':')[1].strip()}" for line in links.splitlines()
              if line.split(":")[1].strip().split("@")[0] in (BRIDGE,)
              or line.split(":")[1].strip().startswith(NETNS_PREFIX)]
    procs = subprocess.run(["pgrep", "-af", f"systemd-nspawn.*{STATE}"], capture_output=True,
                           text=True).stdout
    found += [f"process {p}" for p in procs.splitlines()]
    if STATE.exists():
        found.append(f"folder {STATE}")
    return found


def test_a_booted_host_is_torn_down_completely():
    network = Network(base=image(), hosts={"probe": 30}, daemons={"probe": ()})
    try:
        network.create()
        network.boot()
        probe = network.containers["probe"]
        # Booted: systemd finished starting. A bare probe (no resolver, every
        # role's daemon unconfigured) may count a failed package service, so
        # "degraded" is booted too; "starting" or no answer is not.
        state = probe.ssh("systemctl is-system-running", check=False).stdout.strip()
        assert state in ("running", "degraded"), state
        assert Path(f"/proc/{probe.pid}").exists()
        assert leftovers(), "the environment was up"
    finally:
        network.destroy()
    assert leftovers() == []
