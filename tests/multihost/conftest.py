"""Several servers: the regency's layout on containers booted on this machine.

The session fixture builds (or takes from the cache) the Debian image, boots
four containers — ns1 (DNS primary), ns2 (DNS secondary), mail1 and web1 —
on a bridge of their own, writes an inventory for them and hands the tests a
`Lab` that runs `sop apply` over SSH against it. The inventory starts from
the lab's group_vars (policy, documents, daemon settings), then points the
zone and the daemons at the containers' addresses.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from .containers import CONTROLLER, PREFIX, STATE, Network

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
ZONE = "sumbabaratdayakab.go.id"
HOSTS = {"ns1": 11, "ns2": 12, "mail1": 13, "web1": 14}
DAEMONS = {"ns1": ("named",), "ns2": ("named",), "mail1": ("postfix", "dovecot"),
           "web1": ("nginx",)}
GROUPS = {"dns_primary": ["ns1"], "dns_secondary": ["ns2"], "mail": ["mail1"], "web": ["web1"],
          # The lab's own CA and mail certificate, made on the mail host.
          "lab_pki": ["mail1"]}
INVENTORY = STATE / "inventory"
REQUESTS = STATE / "requests"
SOP_STATE = STATE / "state"
# The lab CA the mail host made (its overlay root is visible from here).
MAIL_CA = STATE / "mail1" / "root" / "etc" / "sop-lab-ca" / "ca.crt"


def address(name: str) -> str:
    return f"{PREFIX}.{HOSTS[name]}"


def pytest_collection_modifyitems(items):
    for item in items:
        if "multihost" in str(item.fspath):
            item.add_marker(pytest.mark.multihost)


def write_inventory() -> None:
    """hosts.yml, the lab's group_vars, and the multi-host settings on top."""
    shutil.rmtree(INVENTORY, ignore_errors=True)
    shutil.copytree(REPO / "inventory" / "lab" / "group_vars", INVENTORY / "group_vars")
    key = STATE / "id_ed25519"
    known = STATE / "known_hosts"
    connection = {
        "ansible_connection": "ssh",
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(key),
        "ansible_ssh_common_args": f"-o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes",
        "ansible_python_interpreter": "/usr/bin/python3",
    }
    hosts = {
        "all": {
            "hosts": {name: {"ansible_host": address(name), **connection} for name in HOSTS},
            "children": {g: {"hosts": {h: None for h in members}}
                         for g, members in GROUPS.items()},
        }
    }
    (INVENTORY / "hosts.yml").write_text("---\n" + yaml.safe_dump(hosts, sort_keys=False))

    # Each daemon listens on its own host's address.
    host_vars = {
        "ns1": {"bind_listen_ipv4": [address("ns1")],
                "sop_dns_endpoint": {"address": address("ns1")}},
        "ns2": {"bind_listen_ipv4": [address("ns2")],
                "sop_dns_endpoint": {"address": address("ns2")}},
        "mail1": {"postfix_inet_interfaces": "all", "dovecot_listen": [address("mail1")]},
        "web1": {"nginx_listen_ipv4": address("web1"),
                 "sftp_hosting_sshd_listen": [address("web1")]},
    }
    (INVENTORY / "host_vars").mkdir()
    for name, values in host_vars.items():
        (INVENTORY / "host_vars" / f"{name}.yml").write_text("---\n" + yaml.safe_dump(values))

    # The zone points at the containers; state and requests are the suite's own.
    lab = yaml.safe_load((REPO / "inventory/lab/group_vars/all/sop.yml").read_text())
    postcheck = dict(lab.get("sop_postcheck") or {})
    # The lab CA is made on mail1 (group lab_pki): the tests fetch it to verify.
    postcheck.update(dns_server=address("ns1"), web_address=address("web1"),
                     imap_host=address("mail1"), ca_file=str(MAIL_CA))
    overrides = {
        "sop_requests_dir": str(REQUESTS),
        "sop_state_dir": str(SOP_STATE),
        "sop_register_file": "{{ sop_state_dir }}/register.vault.yml",
        "sop_vault_password_file": "{{ sop_state_dir }}/vault-password",
        "sop_web_ipv4": address("web1"),
        "sop_mail_ipv4": address("mail1"),
        "sop_nameservers": [{"name": "ns1", "ipv4": address("ns1")},
                            {"name": "ns2", "ipv4": address("ns2")}],
        "sop_postcheck": postcheck,
        # The lab's webmail settings name this machine's CA files and
        # loopback; the web host has neither: the webmail is the lab's and
        # the production rehearsal's (tests/integration/test_webmail.py,
        # test_production.py), not this suite's.
        "sop_webmail": {"hostname": ""},
    }
    # group_vars/all/* load in name order: this file comes last and wins.
    (INVENTORY / "group_vars" / "all" / "zz-multihost.yml").write_text(
        "---\n# Written by tests/multihost/conftest.py: the containers' addresses.\n"
        + yaml.safe_dump(overrides, sort_keys=False)
    )


def prepare_state() -> None:
    shutil.rmtree(REQUESTS, ignore_errors=True)
    shutil.copytree(REPO / "lab" / "requests", REQUESTS)
    shutil.rmtree(SOP_STATE, ignore_errors=True)
    SOP_STATE.mkdir(mode=0o700, parents=True)
    password = SOP_STATE / "vault-password"
    password.write_bytes(os.urandom(24).hex().encode() + b"\n")
    password.chmod(0o600)


@dataclass
class Lab:
    network: Network
    image_seconds: float
    boot_seconds: float

    def apply(self) -> dict:
        """`sop apply` against the containers; the run record and the output."""
        env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}"}
        env.pop("SOP_STATE_DIR", None)
        started = time.monotonic()
        result = subprocess.run(
            [str(VENV_BIN / "sop"), "-i", str(INVENTORY), "apply"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
        )
        reports = sorted((SOP_STATE / "reports").glob("*.json"), key=lambda p: p.stat().st_mtime)
        record = json.loads(reports[-1].read_text()) if reports else {}
        return {"rc": result.returncode, "output": result.stdout + result.stderr,
                "record": record, "seconds": time.monotonic() - started,
                "report_md": reports[-1].with_suffix(".md").read_text() if reports else ""}

    def register(self):
        from sop.register import Register, vault_password

        return Register(SOP_STATE / "register.vault.yml",
                        vault_password(SOP_STATE / "vault-password"))

    def add_request(self, label: str, abbreviation: str, *, hosting: bool = True) -> dict:
        """A new approved request, shaped like the lab's dinkes example."""
        req = yaml.safe_load((REPO / "lab" / "requests" / "dinkes.yml").read_text())
        req["subdomain"] = label
        req["agency"]["name"] = f"Dinas Uji {abbreviation.title()}"
        req["agency"]["abbreviation"] = abbreviation
        req["letter"]["number"] = f"000.1/{len(label)}/{abbreviation}/XI/2026"
        if not hosting:
            req.pop("hosting", None)
        (REQUESTS / f"{label}.yml").write_text(yaml.safe_dump(req, sort_keys=False))
        return req

    def host(self, name: str):
        return self.network.containers[name]


@pytest.fixture(scope="session", autouse=True)
def _root_required_multihost():
    if os.geteuid() != 0:
        pytest.fail("the multi-host tests boot containers and must run as root")


def image() -> Path:
    """The cached root file system (built on first use)."""
    built = subprocess.run([str(REPO / "scripts" / "multihost-image")], capture_output=True,
                           text=True, cwd=REPO, timeout=1800)
    assert built.returncode == 0, built.stderr
    return Path(built.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def multihost():
    for tool in ("debootstrap", "systemd-nspawn"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is missing: run ./scripts/bootstrap (Debian package "
                        f"{'debootstrap' if tool == 'debootstrap' else 'systemd-container'})")
    started = time.monotonic()
    base = image()
    image_seconds = time.monotonic() - started

    network = Network(base=base, hosts=HOSTS, domain=ZONE, daemons=DAEMONS)
    started = time.monotonic()
    try:
        network.create()
        network.boot()
        write_inventory()
        prepare_state()
        yield Lab(network, image_seconds, time.monotonic() - started)
    finally:
        if os.environ.get("SOP_MULTIHOST_KEEP") != "1":  # keep it up to look around
            network.destroy()


__all__ = ["CONTROLLER", "HOSTS", "ZONE", "Lab", "address"]
