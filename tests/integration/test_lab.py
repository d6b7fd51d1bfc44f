"""The walking skeleton's promise, observed from outside as a user would.

Names resolve at the lab's authoritative server, sites answer for their
names, the printout holds passwords that log in, and a second run changes
nothing. Mail has its own module (test_mail.py).
"""

from __future__ import annotations

import json
import subprocess

import dns.message
import dns.query
import dns.rdatatype

from .conftest import REPO, changed_tasks, playbook, recap, run, snapshot
from .mailclient import imaps

DNS = "127.0.0.1"
ZONE = "sumbabaratdayakab.go.id"


def ask(name: str, rdtype: str) -> list[str]:
    q = dns.message.make_query(name, rdtype)
    r = dns.query.udp(q, DNS, timeout=3)
    want = dns.rdatatype.from_text(rdtype)
    return sorted(rd.to_text() for rrset in r.answer if rrset.rdtype == want for rd in rrset)


def serial() -> int:
    q = dns.message.make_query(ZONE, "SOA")
    r = dns.query.udp(q, DNS, timeout=3)
    return r.answer[0][0].serial


# --- DNS ---------------------------------------------------------------

def test_every_example_name_answers_at_the_lab_dns(requests):
    assert requests, "no lab examples"
    for req in requests:
        if req["hosting"]:
            assert ask(req["fqdn"], "A") == ["127.0.0.1"], req["fqdn"]
            assert ask(f"www.{req['fqdn']}", "A") == ["127.0.0.1"]
        else:
            assert ask(req["fqdn"], "A") == [], f"{req['fqdn']} has no hosting: no A"
        if req["mail"] and req["mail"]["domain"] == "subdomain":
            assert ask(req["fqdn"], "MX") == [f"10 mail.{ZONE}."]
    assert ask(ZONE, "MX") == [f"10 mail.{ZONE}."], "parent-domain mail needs the apex MX"
    assert ask(f"mail.{ZONE}", "A") == ["127.0.0.1"]


def test_the_lab_dns_is_not_an_open_resolver(lab_apply):
    q = dns.message.make_query("example.com", "A")
    r = dns.query.udp(q, DNS, timeout=3)
    assert r.rcode() == dns.rcode.REFUSED
    assert not r.answer


# --- Register, printout, report ------------------------------------------

def test_every_account_is_in_the_encrypted_register(requests, register, settings):
    from sop.model import accounts

    raw = settings.path("sop_register_file").read_bytes()
    assert raw.startswith(b"$ANSIBLE_VAULT;")
    assert oct(settings.path("sop_register_file").stat().st_mode & 0o777) == "0o600"
    from sop.register import mariadb_hash

    kinds = set()
    for acct in accounts(requests):
        entry = register.accounts[acct["id"]]
        assert entry["password"].encode() not in raw
        if acct["kind"] == "database":  # MariaDB's own hash format, of that password
            assert entry["hash"] == mariadb_hash(entry["password"])
        else:
            assert entry["hash"].startswith("$6$")
        kinds.add(acct["kind"])
    assert "database" in kinds, "the lab examples have a site database"


def test_printout_holds_passwords_that_the_lab_accepts(requests, register, settings):
    req = next(r for r in requests if r["mail"] and r["hosting"])
    result = run(["sop", "-i", "inventory/lab", "print", req["subdomain"]])
    assert result.returncode == 0, result.stderr
    pdf = settings.state_dir / "printouts" / f"{req['subdomain']}.pdf"
    assert pdf.exists()
    assert pdf.stat().st_mode & 0o077 == 0, "printouts must be readable by the owner only"
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                          text=True, check=True).stdout
    for box in req["mail"]["mailboxes"]:
        password = register.accounts[box["address"]]["password"]
        assert box["address"] in text
        assert password in text
        # The password as printed is the one the server accepts (IMAP over TLS).
        imaps(box["address"], password).logout()


def test_report_records_each_step_and_the_post_checks(lab_apply, requests, register):
    report = lab_apply["report"]
    assert report["status"] == "ok"
    numbers = {s["number"]: s for s in report["steps"]}
    for n in (3, 4, 5, 6):
        assert numbers[n]["status"] == "ok" and numbers[n]["seconds"] > 0
    checked = {(c["subdomain"], c["check"]) for c in report["postchecks"]}
    for req in requests:
        assert (req["subdomain"], "dns") in checked
    assert all(c["ok"] for c in report["postchecks"])
    for entry in register.accounts.values():
        assert entry["password"] not in json.dumps(report)


# --- Idempotence and refusal ---------------------------------------------

def test_a_second_run_changes_nothing(lab_apply, register, settings):
    # A daemon started again by its init script (a reboot does that) must not
    # undo what the run set: PHP-FPM's start re-applies its tmpfiles.d entry.
    restarted = run(["service", "php8.2-fpm", "restart"])
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    before_serial = serial()
    before_files = snapshot()
    result = playbook()
    assert result.returncode == 0, result.stdout[-3000:]
    counters = recap(result.stdout)
    assert counters, result.stdout[-2000:]
    assert all(c["changed"] == 0 for c in counters.values()), \
        (counters, changed_tasks(result.stdout))
    assert serial() == before_serial
    assert snapshot() == before_files
    from sop.register import Register, vault_password

    again = Register(settings.path("sop_register_file"),
                     vault_password(settings.path("sop_vault_password_file")))
    assert {k: v["password"] for k, v in again.accounts.items()} == \
        {k: v["password"] for k, v in register.accounts.items()}


def test_a_daemon_that_stopped_is_started_by_the_next_run_and_only_it(lab_apply):
    # The "Start" tasks are skipped for daemons that step 3's facts list as
    # running; one that stopped must still be started, by its own task.
    for name in ("opendkim", "php8.2-fpm"):
        stopped = run(["service", name, "stop"])
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert run(["service", name, "status"]).returncode != 0, f"{name} still runs"
    result = playbook()
    assert result.returncode == 0, result.stdout[-3000:]
    changed = sorted(changed_tasks(result.stdout))
    assert changed == ["opendkim : Start OpenDKIM [lab]", "php_fpm : Start PHP-FPM [lab]"], changed
    for name in ("opendkim", "php8.2-fpm", "nginx", "postfix", "dovecot", "named", "ssh"):
        assert run(["service", name, "status"]).returncode == 0, f"{name} does not run"
    again = playbook()
    assert again.returncode == 0, again.stdout[-3000:]
    assert changed_tasks(again.stdout) == []


def test_an_invalid_request_set_fails_before_any_change(lab_apply, tmp_path):
    bad = tmp_path / "requests"
    bad.mkdir()
    for src in (REPO / "lab" / "requests").glob("*.yml"):
        (bad / src.name).write_text(src.read_text())
    # A new agency asking for a reserved name, with a broken quota.
    text = (bad / "dinkes.yml").read_text().replace("subdomain: dinkes", "subdomain: mail")
    (bad / "mail.yml").write_text(text.replace("quota: 512M", "quota: lots"))
    before = snapshot()
    result = playbook("-e", f"sop_requests_dir={bad}")
    assert result.returncode != 0
    assert "mail.yml" in result.stdout and "subdomain" in result.stdout
    assert "hosting.quota" in result.stdout
    assert snapshot() == before
    counters = recap(result.stdout)
    assert all(c["changed"] == 0 for c in counters.values()), counters
    assert "lab" not in counters or counters["lab"]["ok"] == 0, "no task may run on the lab host"


def test_short_storage_stops_the_run_before_any_change(lab_apply):
    before = snapshot()
    result = playbook("-e", "sop_storage_reserve_percent=100")
    assert result.returncode != 0
    assert "Not enough storage on lab" in result.stdout
    assert "/var/mail/vhosts" in result.stdout
    assert snapshot() == before
    assert all(c["changed"] == 0 for c in recap(result.stdout).values())
