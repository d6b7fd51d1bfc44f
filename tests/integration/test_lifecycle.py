"""Issue 9 on the lab: changes, suspension, removal with an undo window,
purge after the retention, events that end, seen from outside.

The module works on its own copy of the lab examples (an inventory overlay
pointing ``sop_requests_dir`` at it, with the lab's own state and register,
so passwords are the lab's) and moves the lifecycle's date forward with
``SOP_TODAY``, one `sop apply` per stage:

=========  ==========  =========================================================
stage      SOP_TODAY   what changes in the request files
=========  ==========  =========================================================
change     2027-03-15  dinkes: + mailbox humas, + alias, larger hosting quota;
                       bappeda: status suspended; pasola ends in 16 days;
                       a new web-only request ujiarsip
remove     2027-04-05  (a removal of 2 of 5 agencies is refused first)
                       bappeda resumed; humas and its alias removed; dukcapil
                       and ujiarsip removed (allowed: --allow-large-removal);
                       pasola has ended (suspended)
undo       2027-04-20  dukcapil back (undo window); dinkes suspended with the
                       inventory refusing a suspended agency's mail
purge      2027-05-06  dinkes resumed; humas and ujiarsip purged (31 days);
                       pasola archived (ended 36 days ago)
=========  ==========  =========================================================

The last test applies the lab examples again with the real date: pasola comes
back from its archive with the same password, and the lab is as the other
tests expect it.
"""

from __future__ import annotations

import imaplib
import json
import pwd
import re
import shutil
import smtplib
import subprocess
import uuid
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import paramiko
import pytest
import yaml

from .conftest import REPO, VENV_BIN, run, snapshot
from .mailclient import HOST, fetch_by_subject, imaps, message, send, submit
from .test_web import get, ssh
from .webmail import browser as webmail_browser
from .webmail import login as webmail_login

ZONE = "sumbabaratdayakab.go.id"
MAIL_ROOT = Path("/var/mail/vhosts")
WEB_ROOT = Path("/srv/www")
HUMAS = f"humas@dinkes.{ZONE}"
LAYANAN = f"layanan@dukcapil.{ZONE}"
BAPPEDA = f"bappeda@{ZONE}"
ADMIN = f"admin@dinkes.{ZONE}"
WEBMAIL_URL = f"https://webmail.{ZONE}/"


# --- helpers -----------------------------------------------------------------------


def sop_apply(inventory: Path, today: str | None, *extra: str) -> subprocess.CompletedProcess:
    env = {"SOP_TODAY": today} if today else {}
    return run([str(VENV_BIN / "sop"), "-i", str(inventory), "apply", *extra], env=env)


def report_of(result: subprocess.CompletedProcess) -> dict:
    """The run report (JSON), with the path of its Markdown version under ``md``."""
    found = re.search(r"Laporan \(json\): (\S+)", result.stdout)
    assert found, result.stdout[-3000:] + result.stderr
    report = json.loads(Path(found.group(1)).read_text())
    report["md"] = found.group(1).removesuffix(".json") + ".md"
    return report


def answer(name: str, rdtype: str) -> tuple[int, list[str]]:
    q = dns.message.make_query(name, rdtype)
    r = dns.query.udp(q, "127.0.0.1", timeout=3)
    return r.rcode(), sorted(rd.to_text() for rrset in r.answer
                             if rrset.rdtype == dns.rdatatype.from_text(rdtype) for rd in rrset)


def rcpt(address: str) -> tuple[int, str]:
    with smtplib.SMTP(HOST, 25, timeout=10) as smtp:
        smtp.ehlo("penguji.example.net")
        smtp.mail("penguji@example.net")
        code, text = smtp.rcpt(address)
        return code, text.decode(errors="replace")


def imap_refused(address: str, password: str) -> bool:
    try:
        imaps(address, password).logout()
    except imaplib.IMAP4.error:
        return True
    return False


def sftp_refused(user: str, password: str) -> bool:
    try:
        ssh(user, password).close()
    except paramiko.AuthenticationException:
        return True
    return False


def db_login(user: str, password: str):
    """The site's database user logs in through the socket (issue 20)."""
    from .test_database import mariadb

    return mariadb("SELECT 1;", user=user, password=password)


def register():
    from sop.config import load_settings
    from sop.register import Register, vault_password

    s = load_settings(REPO / "inventory" / "lab")
    return Register(s.path("sop_register_file"),
                    vault_password(s.path("sop_vault_password_file")))


def password(address: str) -> str:
    return register().accounts[address]["password"]


def edit(folder: Path, label: str, change) -> None:
    path = folder / f"{label}.yml"
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))


def archives(root: Path, name: str) -> list[str]:
    folder = root / ".archive"
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(name + "-")) \
        if folder.is_dir() else []


def uid() -> str:
    return uuid.uuid4().hex[:10]


# --- the stages --------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab(lab_apply, tmp_path_factory):
    base = tmp_path_factory.mktemp("lifecycle")
    folder = base / "requests"
    shutil.copytree(REPO / "lab" / "requests", folder)
    inv = base / "inventory"
    shutil.copytree(REPO / "inventory" / "lab", inv)
    overlay = inv / "group_vars" / "all" / "zz-lifecycle-test.yml"

    def settings(**extra) -> Path:
        overlay.write_text(yaml.safe_dump({"sop_requests_dir": str(folder), **extra}))
        return inv

    settings()
    # Live accounts (an earlier interrupted run may have left one archived).
    before = {k: v["hash"] for k, v in register().accounts.items() if not v.get("archived")}
    state = {"folder": folder, "inventory": inv, "settings": settings, "hashes": before,
             "restored": False}
    yield state
    if not state["restored"]:  # a stage failed: put the lab examples back all the same
        result = sop_apply(REPO / "inventory" / "lab", None)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr


@pytest.fixture(scope="module")
def changed(lab):
    folder = lab["folder"]
    # The agency's own page, uploaded before its event is archived: the undo must
    # bring back this file, not a placeholder written again.
    lab["own_page"] = (f"milik-pasola-{uid()}.html", f"Halaman pasola {uid()}\n")
    client = ssh("w-pasola", password("hosting:pasola"))
    try:
        with client.open_sftp() as sftp, sftp.open(f"/public/{lab['own_page'][0]}", "w") as fh:
            fh.write(lab["own_page"][1])
    finally:
        client.close()

    def dinkes(doc):
        doc["hosting"]["quota"] = "768M"
        doc["mail"]["mailboxes"].append(
            {"local_part": "humas", "holder": "Fransiska Lero", "quota": "64M"})
        doc["mail"]["aliases"].append({"local_part": "humas.info", "to": ["humas"]})

    edit(folder, "dinkes", dinkes)
    edit(folder, "bappeda", lambda doc: doc.update(status="suspended"))
    new = yaml.safe_load((folder / "pasola.yml").read_text())
    new["subdomain"] = "ujiarsip"
    new["agency"] = {"name": "Kantor Uji Arsip", "abbreviation": "UJIARSIP",
                     "category": "instansi"}
    new["hosting"] = {"quota": "8M"}
    (folder / "ujiarsip.yml").write_text(yaml.safe_dump(new, allow_unicode=True))
    result = sop_apply(lab["inventory"], "2027-03-15")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    return {"report": report_of(result)}


def test_a_change_converges_and_untouched_passwords_stay(lab, changed):
    accounts = register().accounts
    # Every account that existed keeps its hash: only the new mailbox is new.
    assert {k: accounts[k]["hash"] for k in lab["hashes"]} == lab["hashes"]
    assert set(accounts) - set(lab["hashes"]) == {HUMAS, "hosting:ujiarsip"}
    imaps(HUMAS, password(HUMAS)).logout()
    imaps(ADMIN, password(ADMIN)).logout()
    subject = f"alias-baru-{uid()}"
    send(f"humas.info@dinkes.{ZONE}", subject)
    assert fetch_by_subject(HUMAS, password(HUMAS), subject), "the new alias reaches humas"
    # The larger hosting quota is what the storage check counted.
    record = json.loads(Path(changed["report"]["storage_record"]).read_text())
    hosting = {a["id"]: a["quota_bytes"] for ag in record["agencies"] for a in ag["accounts"]}
    assert hosting["hosting:dinkes"] == 768 * 2**20


def test_a_new_request_is_created(changed):
    assert answer(f"ujiarsip.{ZONE}", "A") == (dns.rcode.NOERROR, ["127.0.0.1"])
    status, _, body = get(f"ujiarsip.{ZONE}")
    assert status == 200 and "Kantor Uji Arsip" in body
    ssh("w-ujiarsip", password("hosting:ujiarsip")).close()


def test_a_suspended_agency_shows_a_plain_page_and_refuses_logins(lab, changed):
    status, _, body = get(f"bappeda.{ZONE}")
    assert status == 503 and "Situs ditangguhkan" in body
    assert "Badan Perencanaan" not in body, "none of the agency's own content"
    status, _, body = get(f"www.bappeda.{ZONE}", tls=True)
    assert status == 503 and "ditangguhkan" in body
    assert imap_refused(BAPPEDA, password(BAPPEDA))
    # Nor may it send: SMTP AUTH on the submission port is refused too (issue 16).
    with pytest.raises(smtplib.SMTPAuthenticationError):
        submit(BAPPEDA, password(BAPPEDA), message(BAPPEDA, LAYANAN, f"tangguh-{uid()}"))
    assert sftp_refused("w-bappeda", password("hosting:bappeda"))
    # Its database user is locked (issue 20); its data stays.
    refused = db_login("w_bappeda", password("database:bappeda"))
    assert refused.returncode != 0 and "locked" in refused.stderr.lower()
    # Names stay; mail is still accepted (the inventory's default), read after resuming.
    assert answer(f"bappeda.{ZONE}", "A") == (dns.rcode.NOERROR, ["127.0.0.1"])
    assert rcpt(BAPPEDA)[0] == 250
    lab["held_subject"] = f"saat-ditangguhkan-{uid()}"
    send(BAPPEDA, lab["held_subject"])
    # Nothing outside the transition: the other agencies are served as before.
    assert get(f"dinkes.{ZONE}")[0] == 200 and get(f"pasola.{ZONE}")[0] == 200
    imaps(LAYANAN, password(LAYANAN)).logout()
    life = changed["report"]["lifecycle"]
    assert life["suspended"] == ["bappeda"] and life["archived_now"] == []


def test_a_suspended_mailbox_cannot_log_in_to_the_webmail(changed, tmp_path):
    with webmail_browser(tmp_path) as page:
        assert not webmail_login(page, WEBMAIL_URL, BAPPEDA, password(BAPPEDA))
        assert webmail_login(page, WEBMAIL_URL, HUMAS, password(HUMAS)), "a new mailbox can"
    # The run's post-checks saw the same: refused for the suspended, in for the new.
    checks = {c["target"]: c for c in changed["report"]["postchecks"] if c["check"] == "webmail"}
    assert checks[BAPPEDA]["ok"] and "ditangguhkan" in checks[BAPPEDA]["detail"]
    assert checks[HUMAS]["ok"] and checks[HUMAS]["detail"].startswith("login OK")


def test_an_event_ending_soon_is_warned_about(changed):
    warnings = changed["report"]["lifecycle"]["warnings"]
    assert any("pasola" in w and "2027-03-31" in w for w in warnings), warnings
    md = Path(changed["report"]["md"]).read_text()
    assert "Peringatan: Kegiatan Festival Pasola 2027" in md
    assert "| Ditangguhkan | bappeda |" in md


@pytest.fixture(scope="module")
def removed(lab, changed):
    folder = lab["folder"]
    # Removing 2 of the 4 agencies (50% > 30%) is refused before any change.
    aside = lab["folder"].parent / "aside"
    aside.mkdir()
    for label in ("dinkes", "dukcapil"):
        shutil.move(folder / f"{label}.yml", aside / f"{label}.yml")
    before = snapshot()
    refused = sop_apply(lab["inventory"], "2027-04-05")
    lab["refused"] = (refused, before, snapshot())
    shutil.move(aside / "dinkes.yml", folder / "dinkes.yml")
    lab["dukcapil_file"] = aside / "dukcapil.yml"

    lab["kept_subject"] = f"sebelum-dihapus-{uid()}"
    send(LAYANAN, lab["kept_subject"])
    assert fetch_by_subject(LAYANAN, password(LAYANAN), lab["kept_subject"])

    def dinkes(doc):
        doc["mail"]["mailboxes"] = [b for b in doc["mail"]["mailboxes"]
                                    if b["local_part"] != "humas"]
        doc["mail"]["aliases"] = [a for a in doc["mail"]["aliases"]
                                  if a["local_part"] != "humas.info"]

    edit(folder, "dinkes", dinkes)
    edit(folder, "bappeda", lambda doc: doc.pop("status"))
    (folder / "ujiarsip.yml").unlink()
    # dukcapil and ujiarsip: 2 of 5 again, this time allowed explicitly.
    result = sop_apply(lab["inventory"], "2027-04-05", "--allow-large-removal")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    return {"report": report_of(result)}


def test_removing_too_many_agencies_at_once_is_refused(lab, removed):
    refused, before, after = lab["refused"]
    assert refused.returncode != 0
    out = refused.stdout + refused.stderr
    assert "would remove 2 of 5 agencies (40% > 30%)" in out
    assert "--allow-large-removal" in out
    assert after == before, "nothing changed on the servers"


def test_a_resumed_agency_gets_everything_back_with_the_same_password(lab, removed):
    status, _, body = get(f"bappeda.{ZONE}")
    assert status == 200 and "Badan Perencanaan Pembangunan Daerah" in body
    assert fetch_by_subject(BAPPEDA, password(BAPPEDA), lab["held_subject"]), \
        "mail sent while suspended was kept"
    ssh("w-bappeda", password("hosting:bappeda")).close()
    back = db_login("w_bappeda", password("database:bappeda"))
    assert back.returncode == 0, back.stderr


def test_a_removed_mailbox_is_archived_not_deleted(removed):
    domain = MAIL_ROOT / f"dinkes.{ZONE}"
    assert not (domain / "humas").exists()
    assert archives(MAIL_ROOT, HUMAS) == [f"{HUMAS}-2027-04-05"]
    assert (MAIL_ROOT / ".archive").stat().st_mode & 0o777 == 0o700
    entry = register().accounts[HUMAS]
    assert entry["archived"] == "2027-04-05"
    assert imap_refused(HUMAS, entry["password"])
    assert rcpt(HUMAS)[0] == 550 and rcpt(f"humas.info@dinkes.{ZONE}")[0] == 550
    imaps(ADMIN, password(ADMIN)).logout()  # the rest of the request is untouched
    life = removed["report"]["lifecycle"]
    archived = {e["id"]: e for e in life["archived_now"]}
    assert archived[HUMAS]["purge_after"] == "2027-05-05"
    assert HUMAS in life["done"]["archived"]


def test_an_archived_mailbox_cannot_log_in_to_the_webmail(removed, tmp_path):
    with webmail_browser(tmp_path) as page:
        assert not webmail_login(page, WEBMAIL_URL, HUMAS, register().accounts[HUMAS]["password"])
        assert not webmail_login(page, WEBMAIL_URL, LAYANAN, password(LAYANAN))
        assert webmail_login(page, WEBMAIL_URL, BAPPEDA, password(BAPPEDA)), "resumed: it can"


def test_a_removed_agency_is_archived_and_its_names_go(lab, removed):
    assert answer(f"dukcapil.{ZONE}", "MX")[1] == []
    # The whole mail domain is gone: no longer ours, relaying refused (554).
    assert rcpt(LAYANAN)[0] == 554
    assert imap_refused(LAYANAN, password(LAYANAN))
    assert archives(MAIL_ROOT, LAYANAN) == [f"{LAYANAN}-2027-04-05"]
    names = Path(removed["report"]["names"]["md"]).read_text()
    assert re.search(rf"\| {re.escape(LAYANAN)} \| kotak surat \| .*\| diarsipkan \|", names)
    assert f"| bappeda.{ZONE} | subdomain | Badan Perencanaan Pembangunan Daerah (BAPPEDA) " \
           "| aktif |" in names


def test_a_removed_site_is_archived_and_its_account_locked(removed):
    assert removed["report"]["allow_large_removal"] is True
    assert answer(f"ujiarsip.{ZONE}", "A")[0] == dns.rcode.NXDOMAIN
    status, _, body = get(f"ujiarsip.{ZONE}")
    assert status == 404 and "Uji Arsip" not in body
    assert not (WEB_ROOT / "ujiarsip").exists()
    assert archives(WEB_ROOT, "ujiarsip") == ["ujiarsip-2027-04-05"]
    assert (WEB_ROOT / ".archive").stat().st_mode & 0o777 == 0o700
    assert sftp_refused("w-ujiarsip", password("hosting:ujiarsip"))


def test_an_ended_event_is_suspended(removed):
    status, _, body = get(f"pasola.{ZONE}")
    assert status == 503 and "Situs ditangguhkan" in body
    assert removed["report"]["lifecycle"]["states"]["pasola"]["state"] == "suspended"


@pytest.fixture(scope="module")
def undone(lab, removed):
    shutil.move(lab["dukcapil_file"], lab["folder"] / "dukcapil.yml")
    edit(lab["folder"], "dinkes", lambda doc: doc.update(status="suspended"))
    result = sop_apply(lab["settings"](sop_suspended_mail="reject"), "2027-04-20")
    lab["settings"]()
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    return {"report": report_of(result)}


def test_a_request_back_within_the_undo_window_gets_its_data_back(lab, undone):
    assert archives(MAIL_ROOT, LAYANAN) == []
    assert fetch_by_subject(LAYANAN, password(LAYANAN), lab["kept_subject"])
    assert answer(f"dukcapil.{ZONE}", "MX")[1] == [f"10 mail.{ZONE}."]
    assert "archived" not in register().accounts[LAYANAN]
    restored = {e["id"] for e in undone["report"]["lifecycle"]["restored"]}
    assert LAYANAN in restored


def test_a_suspended_agency_mail_is_refused_when_the_inventory_says_so(undone):
    code, text = rcpt(ADMIN)
    assert code == 550 and "5.2.1" in text
    assert imap_refused(ADMIN, password(ADMIN))
    assert get(f"dinkes.{ZONE}")[0] == 503
    # Still within its retention (15 days): kept in the archive.
    assert archives(MAIL_ROOT, HUMAS) == [f"{HUMAS}-2027-04-05"]


@pytest.fixture(scope="module")
def purged(lab, undone):
    edit(lab["folder"], "dinkes", lambda doc: doc.pop("status"))
    result = sop_apply(lab["inventory"], "2027-05-06")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    return {"report": report_of(result)}


def test_an_archive_is_purged_once_the_retention_has_passed(purged):
    assert archives(MAIL_ROOT, HUMAS) == [] and archives(WEB_ROOT, "ujiarsip") == []
    accounts = register().accounts
    assert HUMAS not in accounts and "hosting:ujiarsip" not in accounts
    with pytest.raises(KeyError):
        pwd.getpwnam("w-ujiarsip")
    life = purged["report"]["lifecycle"]
    assert sorted(e["id"] for e in life["purged"]) == sorted([HUMAS, "hosting:ujiarsip"])
    assert life["done"]["purged"] == sorted([HUMAS, "ujiarsip"])
    md = Path(purged["report"]["md"]).read_text()
    assert f"| Dihapus permanen | {HUMAS} |" in md
    names = Path(purged["report"]["names"]["md"]).read_text()
    assert re.search(rf"\| {re.escape(HUMAS)} \| kotak surat \| .*\| dihapus permanen \|", names)
    # Resumed: mail accepted and logins back.
    assert rcpt(ADMIN)[0] == 250
    imaps(ADMIN, password(ADMIN)).logout()


def test_an_event_is_archived_a_month_after_it_ended(lab, purged):
    assert answer(f"pasola.{ZONE}", "A")[0] == dns.rcode.NXDOMAIN
    status, _, body = get(f"pasola.{ZONE}")
    assert status == 404 and "Pasola" not in body
    assert not (WEB_ROOT / "pasola").exists()
    assert archives(WEB_ROOT, "pasola") == ["pasola-2027-05-06"]
    assert get(f"pasola.{ZONE}", f"/{lab['own_page'][0]}")[0] == 404
    shadow = dict(line.split(":")[:2] for line in Path("/etc/shadow").read_text().splitlines())
    assert shadow["w-pasola"].startswith("!")
    assert sftp_refused("w-pasola", password("hosting:pasola"))
    assert purged["report"]["lifecycle"]["states"]["pasola"]["state"] == "expired"
    # Still served: everything else.
    assert get(f"bappeda.{ZONE}")[0] == 200
    imaps(LAYANAN, password(LAYANAN)).logout()


def test_the_lab_examples_come_back_as_they_were(lab, purged):
    result = sop_apply(REPO / "inventory" / "lab", None)
    lab["restored"] = result.returncode == 0
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    status, _, body = get(f"pasola.{ZONE}")
    assert status == 200 and "Festival Pasola 2027" in body
    name, content = lab["own_page"]  # the agency's own file, back from the archive
    status, _, body = get(f"pasola.{ZONE}", f"/{name}")
    assert (status, body) == (200, content)
    client = ssh("w-pasola", password("hosting:pasola"))
    with client.open_sftp() as sftp:
        sftp.remove(f"/public/{name}")
    client.close()
    accounts = register().accounts
    assert {k: accounts[k]["hash"] for k in lab["hashes"]} == lab["hashes"]
    assert not any(e.get("archived") for e in accounts.values())
