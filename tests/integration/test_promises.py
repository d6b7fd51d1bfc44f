"""Promises of the README that only a run of the whole thing can show.

First, on the lab as the session applied it: only hashes reach the servers; a
login may send as its own alias; named-checkconf refuses a bad configuration
while the old one keeps serving.

Then through `sop apply` on a copy of the lab inventory with a state folder
(and so a register) of its own: `--check` shows a new request and changes
nothing; the inventory's `sop_today` and `$SOP_VAULT_PASSWORD_FILE` are
honoured; a failing post-check (a name, a site, a login) fails the run; a new
mailbox reprints its agency's sheet; `--overcommit` when space is really
short; quota `enforce` on a file system without quotas stops the run with its
message. The lab examples are applied again at the end.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import stat
import subprocess
from pathlib import Path
from types import SimpleNamespace

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
import yaml

from .conftest import REPO, VENV_BIN, run, snapshot
from .mailclient import fetch_by_subject, message, submit

ZONE = "sumbabaratdayakab.go.id"
ADMIN = f"admin@dinkes.{ZONE}"
LAB_VARS = yaml.safe_load((REPO / "inventory/lab/group_vars/all/sop.yml").read_text())
HOSTING = ("bappeda", "dinkes", "pasola")  # the lab examples with a site
NEW_BOX = "ujicetak"


def answer(name: str, rdtype: str) -> tuple[int, list[str]]:
    r = dns.query.udp(dns.message.make_query(name, rdtype), "127.0.0.1", timeout=3)
    return r.rcode(), sorted(rd.to_text() for rrset in r.answer
                             if rrset.rdtype == dns.rdatatype.from_text(rdtype) for rd in rrset)


def report_of(result: subprocess.CompletedProcess) -> dict:
    found = re.search(r"Laporan \(json\): (\S+)", result.stdout)
    assert found, result.stdout[-3000:] + result.stderr
    report = json.loads(Path(found.group(1)).read_text())
    report["md_text"] = Path(found.group(1).removesuffix(".json") + ".md").read_text()
    return report


def failed_checks(report: dict) -> set[tuple[str, str]]:
    return {(c["check"], c["target"]) for c in report["postchecks"] if not c["ok"]}


# --- On the lab as the session applied it ------------------------------------------

SCANNED = ["/etc/bind", "/var/lib/bind", "/etc/postfix", "/var/spool/postfix/etc",
           "/etc/dovecot", "/etc/opendkim", "/etc/nginx", "/etc/ssh", "/etc/php",
           "/etc/sop-lab-ca", "/srv/www", "/var/mail/vhosts", "/usr/local/sbin", "/var/log",
           "/etc/passwd", "/etc/shadow", "/etc/group"]


def readable_files(*roots: Path) -> list[Path]:
    out = []
    for root in roots:
        paths = [root] if root.is_file() else sorted(root.rglob("*")) if root.is_dir() else []
        for path in paths:
            try:
                info = path.lstat()
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode) and info.st_size < 64 << 20:
                out.append(path)
    return out


def test_only_hashes_reach_the_servers(settings, register, lab_apply):
    plain = {account_id: entry["password"].encode()
             for account_id, entry in register.accounts.items()}
    assert plain, "the lab register holds accounts"
    state = settings.state_dir
    files = readable_files(*map(Path, SCANNED), state / "runs", state / "reports",
                           state / "records", REPO / ".ansible")
    assert len(files) > 50
    leaks = []
    for path in files:
        try:
            data = path.read_bytes()
        except OSError:  # gone since the listing (a log rotated, a mail moved)
            continue
        leaks += [(str(path), account_id) for account_id, password in plain.items()
                  if password in data]
    assert leaks == []
    assert not any(p in lab_apply["stdout"].encode() for p in plain.values())
    # The scan reads where the credentials live: the hashes are there.
    where = {"mail": Path("/etc/dovecot/users").read_text(),
             "hosting": Path("/etc/shadow").read_text(),
             # A site database's user: MariaDB keeps its own hash of the password.
             "database": subprocess.run(
                 ["mariadb", "--batch", "--skip-column-names", "-e",
                  "SELECT User, authentication_string FROM mysql.user;"],
                 capture_output=True, text=True, check=True, timeout=30).stdout}
    kinds = set()
    for account_id, entry in register.accounts.items():
        if entry.get("archived"):
            continue
        kind = account_id.split(":")[0] if ":" in account_id else "mail"
        kinds.add(kind)
        assert entry["hash"].removeprefix("{SHA512-CRYPT}") in where[kind], account_id
    assert kinds == {"mail", "hosting", "database"}


def test_a_login_may_send_as_its_own_alias(requests, register):
    req = next(r for r in requests if r["subdomain"] == "dinkes")
    alias = next(a for a in req["mail"]["aliases"] if a["to"] == [ADMIN])["address"]
    other = next(b["address"] for b in req["mail"]["mailboxes"] if b["address"] != ADMIN)
    subject = f"sebagai-alias-{secrets.token_hex(5)}"
    submit(ADMIN, register.accounts[ADMIN]["password"], message(alias, other, subject))
    (raw,) = fetch_by_subject(other, register.accounts[other]["password"], subject)
    assert f"From: {alias}".encode() in raw


def test_named_checkconf_refuses_a_bad_configuration_and_the_old_one_serves(lab_apply):
    options = Path("/etc/bind/named.conf.options")
    before, files = options.read_bytes(), snapshot()
    soa = answer(ZONE, "SOA")
    result = run([str(VENV_BIN / "ansible-playbook"), "playbooks/dns.yml",
                  "-e", json.dumps({"bind_listen_ipv4": ["300.1.2.3"]})])
    output = result.stdout + result.stderr
    assert result.returncode != 0
    # The template's validate (named-checkconf %s) refused the render, naming the value.
    assert "failed to validate" in output and "undefined ACL '300.1.2.3'" in output, \
        output[-3000:]
    assert options.read_bytes() == before and snapshot() == files
    assert answer(ZONE, "SOA") == soa and soa[0] == dns.rcode.NOERROR
    assert answer(f"dinkes.{ZONE}", "A") == (dns.rcode.NOERROR, ["127.0.0.1"])


# --- Through `sop apply`, on an inventory of the tests' own --------------------------


@pytest.fixture(scope="module")
def side(tmp_path_factory, lab_apply):
    base = tmp_path_factory.mktemp("promises")
    inventory = base / "inventory"
    shutil.copytree(REPO / "inventory" / "lab", inventory)
    folder = base / "requests"
    shutil.copytree(REPO / "lab" / "requests", folder)
    state = base / "state"
    state.mkdir(mode=0o700)
    password = secrets.token_urlsafe(24)
    (state / "vault-password").write_text(password + "\n")
    (state / "vault-password").chmod(0o600)
    own = {"sop_requests_dir": str(folder), "sop_state_dir": str(state),
           "sop_register_file": str(state / "register.vault.yml"),
           "sop_vault_password_file": str(state / "vault-password")}
    overlay = inventory / "group_vars" / "all" / "zz-promises.yml"

    def configure(**extra) -> None:
        overlay.write_text(yaml.safe_dump({**own, **extra}))

    def apply(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return run([str(VENV_BIN / "sop"), "-i", str(inventory), "apply", *args],
                   env=env or {})

    def register():
        from sop.register import Register

        return Register(state / "register.vault.yml", password.encode())

    def edit(label: str, change) -> None:
        path = folder / f"{label}.yml"
        doc = yaml.safe_load(path.read_text())
        change(doc)
        path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))

    configure()
    first = apply()
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr
    yield SimpleNamespace(inventory=inventory, folder=folder, state=state, password=password,
                          configure=configure, apply=apply, register=register, edit=edit)
    restore = run([str(VENV_BIN / "sop"), "-i", "inventory/lab", "apply"])
    for leftover in Path("/var/mail/vhosts").glob(f"**/{NEW_BOX}*"):
        shutil.rmtree(leftover, ignore_errors=True)
    assert restore.returncode == 0, restore.stdout[-3000:] + restore.stderr


def test_apply_check_through_the_command_shows_a_new_request_and_changes_nothing(side):
    new = yaml.safe_load((side.folder / "pasola.yml").read_text())
    new["subdomain"] = "cekbaru"
    new["agency"].update(name="Kantor Uji Cek", abbreviation="CEKBARU", category="instansi")
    new["agency"].pop("ends", None)
    (side.folder / "cekbaru.yml").write_text(yaml.safe_dump(new, allow_unicode=True))
    before, accounts = snapshot(), set(side.register().accounts)
    try:
        result = side.apply("--check")
    finally:
        (side.folder / "cekbaru.yml").unlink()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert "baru pada proses ini: cekbaru" in result.stdout
    assert re.search(r"diubah: .+ \(lab\)", result.stdout), "check mode shows what would change"
    report = report_of(result)
    assert report["check_mode"] is True
    assert {r["subdomain"]: r["new"] for r in report["requests"]}["cekbaru"] is True
    # Nothing changed: files, register, names, site, accounts.
    assert snapshot() == before
    assert set(side.register().accounts) == accounts
    assert answer(f"cekbaru.{ZONE}", "A")[0] == dns.rcode.NXDOMAIN
    assert not Path("/srv/www/cekbaru").exists()
    assert "w-cekbaru" not in Path("/etc/passwd").read_text()


def test_the_date_and_the_vault_password_come_from_where_the_readme_says(side):
    # pasola ends 2027-03-31: on the inventory's sop_today it is over and suspended.
    (side.state / "vault-password.wrong").write_text("tidak-benar\n")
    side.configure(sop_today="2027-04-15",
                   sop_vault_password_file=str(side.state / "vault-password.wrong"))
    env = {"SOP_VAULT_PASSWORD_FILE": str(side.state / "vault-password")}
    try:
        assert "SOP_TODAY" not in os.environ and "SOP_VAULT_PASSWORD" not in os.environ
        result = side.apply("--check", env=env)
        refused = side.apply("--check")  # the inventory's (wrong) file alone
    finally:
        side.configure()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    states = report_of(result)["lifecycle"]["states"]
    assert states["pasola"]["state"] == "suspended" and states["dinkes"]["state"] == "active"
    assert refused.returncode == 2 and "vault" in refused.stderr.lower(), refused.stderr


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("broken", ["name", "site", "login"])
def test_a_failing_post_check_fails_the_run(side, broken):
    expected = {
        # The zone sends visitors to an address no web server listens on.
        "name": {("dns", f"{label}.{ZONE}") for label in HOSTING},
        # The sites do not answer where the post-check asks.
        "site": {("http", f"{label}.{ZONE}") for label in HOSTING},
        # The server refuses the login with the register's password.
        "login": {("imap", ADMIN)},
    }[broken]
    original = None
    if broken == "name":
        side.configure(sop_web_ipv4="127.0.0.2")
    elif broken == "site":
        side.configure(sop_postcheck={**LAB_VARS["sop_postcheck"], "web_port": closed_port()})
    else:  # the hash on the server stays; the register's plaintext no longer matches it
        register = side.register()
        original = register.accounts[ADMIN]["password"]
        register.accounts[ADMIN]["password"] = "Salah-" + original
        register.save()
    try:
        result = side.apply()
    finally:
        side.configure()
        if original is not None:
            register = side.register()
            register.accounts[ADMIN]["password"] = original
            register.save()
    assert result.returncode == 4, result.stdout[-3000:] + result.stderr  # the run failed
    report = report_of(result)
    assert report["status"] == "failed"
    assert failed_checks(report) == expected
    assert report["failure"].startswith("pemeriksaan akhir gagal: ")
    assert all(f"{check.upper()} {target}" in result.stderr for check, target in expected)


def test_a_new_mailbox_reprints_its_agencys_sheet_only(side):
    address = f"{NEW_BOX}@dukcapil.{ZONE}"
    side.edit("dukcapil", lambda doc: doc["mail"]["mailboxes"].append(
        {"local_part": NEW_BOX, "holder": "Yosefina Kaka", "quota": "16M"}))
    result = side.apply()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    printed = re.findall(r"Dokumen cetak \(printout\): (\S+)", result.stdout)
    assert [Path(p).name for p in printed] == ["dukcapil.pdf"]
    text = subprocess.run(["pdftotext", "-layout", printed[0], "-"], capture_output=True,
                          text=True, check=True).stdout
    register = side.register()
    assert address in text and register.accounts[address]["password"] in text
    # The mailbox that was already there keeps its password, and is on the sheet.
    assert register.accounts[f"layanan@dukcapil.{ZONE}"]["password"] in text
    assert not register.print_due("dukcapil")


def test_overcommit_when_space_is_really_short(side):
    before = snapshot()
    side.edit("dinkes", lambda doc: doc["hosting"].update(quota="60T"))
    side.configure(sop_policy={**LAB_VARS["sop_policy"], "max_hosting_quota": "100T",
                               "max_agency_quota": "200T"})
    try:
        refused = side.apply()
        assert snapshot() == before, "a refused run changes nothing"
        allowed = side.apply("--overcommit")
    finally:
        side.edit("dinkes", lambda doc: doc["hosting"].update(quota="512M"))
        side.configure()
    assert refused.returncode == 4  # the run failed (exits.RUN_FAILED)
    failure = report_of(refused)["failure"]
    assert "Not enough storage on lab" in failure and "--overcommit" in failure, failure
    assert allowed.returncode == 0, allowed.stdout[-3000:] + allowed.stderr
    report = report_of(allowed)
    record = json.loads(Path(report["storage_record"]).read_text())
    assert record["overcommit"] is True
    assert record["overcommitted"] and all(m.startswith("lab:/") for m in record["overcommitted"])
    assert any("overcommit" in note for note in report["notes"])
    assert "tambah kapasitas disk segera" in report["md_text"]


@pytest.fixture(scope="module")
def enforced(side):
    """A run asked to enforce hosting quotas where the file system has none.

    This kernel has CONFIG_QUOTA but no quota format (CONFIG_QFMT_V2 off):
    `mount -o usrquota` of a loop ext4 is accepted, but `quotaon` answers
    "Quota format not supported in kernel" and an ext4 made with `-O quota`
    does not mount. So the lab tests the refusal, not setquota at work.
    """
    mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    web = max((m for m in mounts if "/srv/www/".startswith(m[1].rstrip("/") + "/")),
              key=lambda m: len(m[1]))
    assert not {"usrquota", "quota", "usrjquota"} & {o.split("=")[0] for o in web[3].split(",")}
    side.configure(sftp_hosting_quota="enforce")
    try:
        result = side.apply()
    finally:
        side.configure()
    return {"result": result, "report": report_of(result), "mount": web[1]}


def test_quota_enforce_stops_the_run_where_the_file_system_has_no_quotas(enforced):
    assert enforced["result"].returncode == 4  # the run failed (exits.RUN_FAILED)
    report = enforced["report"]
    assert report["status"] == "failed" and report["postchecks"] == []
    # The module's own failure (its details hidden: it carries hashes), then the
    # task that gives its reason.
    assert "lab: Stop with the reason the accounts could not be set up" in report["failure"], \
        report["failure"]
    step4 = next(s for s in report["steps"] if s["number"] == 4)
    assert step4["status"] == "failed"


def test_quota_enforce_says_why_it_stopped(enforced):
    assert (f"quota enforcement asked for, but {enforced['mount']} is not mounted with "
            "usrquota or the quota tools are missing") in enforced["report"]["failure"]
