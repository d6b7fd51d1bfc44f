"""The lab: this machine as the regency's all-in-one server.

The session fixture applies the example requests (lab/requests) with
`sop apply`, exactly as the README's first command does, and hands the tests
the run record, the validated requests and the credential register.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
MANAGED_FILES = [
    "/var/lib/bind/db.sumbabaratdayakab.go.id",
    "/etc/bind/named.conf.options",
    "/etc/bind/named.conf.local",
    "/etc/bind/transfer.key",
    "/etc/postfix/main.cf",
    "/etc/postfix/virtual_domains",
    "/etc/postfix/virtual_mailboxes",
    "/etc/postfix/virtual_aliases",
    "/etc/postfix/master.cf",
    "/etc/postfix/sender_logins",
    "/etc/dovecot/dovecot.conf",
    "/etc/dovecot/users",
    "/usr/local/sbin/dovecot-quota-warning",
    "/etc/opendkim.conf",
    "/etc/opendkim/KeyTable",
    "/etc/opendkim/SigningTable",
    "/etc/opendkim/TrustedHosts",
    "/etc/dovecot/sieve/junk.sieve",
    "/etc/dovecot/sieve/junk.svbin",
    "/etc/rspamd/local.d/worker-proxy.inc",
    "/etc/rspamd/local.d/actions.conf",
    "/etc/rspamd/local.d/settings.conf",
    "/etc/rspamd/local.d/controller-password.inc",
    "/etc/rspamd/override.d/worker-controller.inc",
    # Keys and certificates are made once and kept.
    "/etc/opendkim/keys/sumbabaratdayakab.go.id/mail.private",
    "/etc/opendkim/keys/dinkes.sumbabaratdayakab.go.id/mail.private",
    "/etc/sop-lab-ca/ca.crt",
    "/etc/sop-lab-ca/mail.crt",
    "/etc/sop-lab-ca/web.crt",
    "/etc/nginx/conf.d/agencies.conf",
    "/usr/local/sbin/sop-nginx-check",
    "/etc/nginx/sop-lab-ca/site.cnf",
    "/etc/nginx/sop-lab-ca/site.crt",
    "/etc/php/8.2/fpm/pool.d/sop-sites.conf",
    "/etc/ssh/sshd_config.d/sop-hosting.conf",
    # The webmail: its settings and its DES key (made once, kept).
    "/etc/roundcube/config.inc.php",
    "/etc/roundcube/sop-des-key.inc.php",
    "/etc/php/8.2/fpm/pool.d/sop-webmail.conf",
    "/etc/nginx/conf.d/sop-webmail.conf",
]


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def _root_required():
    if os.geteuid() != 0:
        pytest.fail("integration tests configure the lab daemons and must run as root")


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
           "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
    env.update(kw.pop("env", {}))
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, **kw)


def playbook(*extra: str) -> subprocess.CompletedProcess:
    return run([str(VENV_BIN / "ansible-playbook"), "playbooks/site.yml", *extra])


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP counters per host."""
    out = {}
    in_recap = False
    for line in output.splitlines():
        if line.startswith("PLAY RECAP"):
            in_recap = True
            continue
        if in_recap and ":" in line:
            host, _, rest = line.partition(":")
            counters = dict(part.split("=") for part in rest.split())
            out[host.strip()] = {k: int(v) for k, v in counters.items()}
    return out


def changed_tasks(output: str) -> list[str]:
    """The tasks that reported a change, as "TASK name [host]" (for messages)."""
    out, task = [], "?"
    for line in output.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            task = line.split("[", 1)[1].rsplit("]", 1)[0]
        elif line.startswith("changed: ["):
            out.append(f"{task} {line.split()[1]}")
    return out


def snapshot() -> dict[str, str]:
    """Content hash of every file the playbook manages on the lab."""
    out = {}
    for name in MANAGED_FILES:
        p = Path(name)
        out[name] = hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else "absent"
    return out


@pytest.fixture(scope="session")
def settings():
    from sop.config import load_settings

    return load_settings(REPO / "inventory" / "lab")


@pytest.fixture(scope="session")
def lab_apply(settings):
    """`sop apply` of the lab examples (the README's first command, minus install)."""
    result = run([str(VENV_BIN / "sop"), "-i", "inventory/lab", "apply"])
    assert result.returncode == 0, result.stdout + result.stderr
    reports = sorted((settings.state_dir / "reports").glob("*.json"))
    assert reports, "apply wrote no report"
    return {"stdout": result.stdout, "report": json.loads(reports[-1].read_text())}


@pytest.fixture(scope="session")
def requests(settings, lab_apply):
    from sop.validate import validate_paths

    reqs, problems = validate_paths([settings.path("sop_requests_dir")], settings.policy)
    assert not problems
    return reqs


@pytest.fixture(scope="session")
def register(settings, lab_apply):
    from sop.register import Register, vault_password

    return Register(settings.path("sop_register_file"),
                    vault_password(settings.path("sop_vault_password_file")))
