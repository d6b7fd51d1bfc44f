"""What agencies' mail does every day beyond delivery (issue 18), on the lab.

Spam filtering: rspamd as Postfix's milter refuses GTUBE at SMTP time, a
message it scores as spam is filed into Junk by Dovecot's global Sieve script,
ordinary mail arrives untouched, a holder's own (authenticated) mail is never
marked and its DKIM signature still verifies; the controller answers on
loopback only and only with the password kept on the host.
"""

from __future__ import annotations

import email
import email.policy
import http.client
import json
import os
import smtplib
import stat
import subprocess
import time
import uuid
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import dkim
import pytest

from .conftest import playbook, recap
from .mailclient import HOST, context, imaps, lab_dns_txt, message

# The standard GTUBE: rspamd refuses it whatever else the message says.
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
CONTROLLER = ("127.0.0.1", 11334)
PASSWORD_FILE = "/etc/rspamd/controller.password"
RSPAMD_FILES = ["/etc/rspamd/local.d/worker-proxy.inc", "/etc/rspamd/local.d/actions.conf",
                "/etc/rspamd/override.d/worker-controller.inc"]


def uid() -> str:
    return uuid.uuid4().hex[:12]


def mailboxes(requests):
    return [b for r in requests if r["mail"] for b in r["mail"]["mailboxes"]]


def password(register, address):
    return register.accounts[address]["password"]


def world_message(to: str, subject: str, body: str) -> EmailMessage:
    """A well-formed message from another domain's MTA (Date, Message-ID)."""
    msg = message("penguji@example.net", to, subject, body)
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain="example.net")
    return msg


def spam(sender: str, tag: str) -> EmailMessage:
    """What a spammer sends: shouted subject, no Date or Message-ID, hidden
    recipients, HTML with nothing but links (one to a bare IP address).
    rspamd's own rules score it between add_header (6) and reject (15)."""
    msg = EmailMessage()
    msg["From"] = f'"PEMENANG UNDIAN" <{sender}>'
    msg["To"] = "undisclosed-recipients:;"
    msg["Subject"] = f"SELAMAT ANDA MENANG HADIAH UANG TUNAI {tag.upper()}!!!"
    msg.set_content('<html><body><a href="http://192.0.2.7/klaim">KLIK DI SINI</a> '
                    '<a href="http://bit.ly/x">http://paypal.com</a></body></html>\n',
                    subtype="html")
    return msg


def send_from_world(msg: EmailMessage, to: str | None = None) -> None:
    with smtplib.SMTP(HOST, 25, timeout=30) as smtp:
        smtp.ehlo("penguji.example.net")
        smtp.starttls(context=context())
        smtp.ehlo("penguji.example.net")
        smtp.send_message(msg, to_addrs=[to] if to else None)


def folders_with(address: str, pw: str, subject: str,
                 timeout: float = 20) -> dict[str, list[bytes]]:
    """{folder: [raw message]} for every folder holding ``subject``, waiting
    until it is somewhere (or ``timeout`` passed)."""
    deadline = time.monotonic() + timeout
    while True:
        found: dict[str, list[bytes]] = {}
        with imaps(address, pw) as imap:
            for folder in ("INBOX", "Junk"):
                imap.select(folder, readonly=True)
                typ, data = imap.search(None, "SUBJECT", f'"{subject}"')
                for num in data[0].split() if typ == "OK" else []:
                    _, parts = imap.fetch(num, "(BODY.PEEK[])")
                    found.setdefault(folder, []).append(parts[0][1])
            imap.logout()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def controller(path: str, pw: str | None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(*CONTROLLER, timeout=10)
    try:
        conn.request("GET", path, headers={} if pw is None else {"Password": pw})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def history(subject: str, timeout: float = 20) -> dict:
    """rspamd's record of the scan of the message with this subject."""
    pw = open(PASSWORD_FILE).read().strip()
    deadline = time.monotonic() + timeout
    while True:
        _, body = controller("/history", pw)
        rows = [r for r in json.loads(body)["rows"] if r.get("subject") == subject]
        if rows or time.monotonic() > deadline:
            assert len(rows) == 1, f"rspamd scanned {len(rows)} message(s) titled {subject}"
            return rows[0]
        time.sleep(0.5)


@pytest.fixture(scope="module")
def box(requests, register):
    """A mailbox of the lab examples and its password."""
    address = mailboxes(requests)[0]["address"]
    return address, password(register, address)


# --- Spam filtering -------------------------------------------------------

def test_gtube_is_refused_at_smtp_time_and_never_delivered(lab_apply, box):
    address, pw = box
    subject = f"gtube-{uid()}"
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send_from_world(world_message(address, subject, f"Penawaran.\n\n{GTUBE}\n"))
    assert refused.value.smtp_code == 554, refused.value
    assert refused.value.smtp_error.startswith(b"5.7.1")
    assert folders_with(address, pw, subject, timeout=3) == {}


def test_message_scored_as_spam_is_filed_into_junk(lab_apply, box):
    address, pw = box
    msg = spam("hadiah@example.net", uid())
    send_from_world(msg, to=address)
    found = folders_with(address, pw, msg["Subject"])
    assert list(found) == ["Junk"], f"filed into {list(found)}"
    assert len(found["Junk"]) == 1
    assert email.message_from_bytes(found["Junk"][0])["X-Spam"] == "Yes"
    row = history(msg["Subject"])
    assert row["action"] == "add header" and 6 <= row["score"] < 15, row


def test_ordinary_mail_arrives_in_the_inbox_untouched(lab_apply, box):
    address, pw = box
    subject = f"biasa-{uid()}"
    body = "Undangan rapat koordinasi hari Senin pukul 09.00 WITA.\n"
    msg = world_message(address, subject, body)
    send_from_world(msg)
    found = folders_with(address, pw, subject)
    assert list(found) == ["INBOX"], f"filed into {list(found)}"
    got = email.message_from_bytes(found["INBOX"][0], policy=email.policy.default)
    assert got["X-Spam"] is None
    assert got["Message-ID"] == msg["Message-ID"]
    assert got.get_content().replace("\r\n", "\n") == body
    row = history(subject)
    assert row["action"] == "no action", "rspamd scanned it and let it be"


def test_holders_own_mail_is_not_marked_and_its_dkim_signature_verifies(requests, register):
    req = next(r for r in requests if r["mail"] and len(r["mail"]["mailboxes"]) > 1)
    sender, rcpt = (b["address"] for b in req["mail"]["mailboxes"][:2])
    # What the world's spam looks like (the hostile case): from a logged-in
    # holder it is scanned, scores as spam would, and is left alone.
    msg = spam(sender, uid())
    with smtplib.SMTP(HOST, 587, timeout=30) as smtp:
        smtp.ehlo("klien.example.net")
        smtp.starttls(context=context())
        smtp.ehlo("klien.example.net")
        smtp.login(sender, password(register, sender))
        smtp.send_message(msg, to_addrs=[rcpt])
    found = folders_with(rcpt, password(register, rcpt), msg["Subject"])
    assert list(found) == ["INBOX"], f"filed into {list(found)}"
    raw = found["INBOX"][0]
    assert email.message_from_bytes(raw)["X-Spam"] is None
    assert dkim.verify(raw, dnsfunc=lab_dns_txt), "OpenDKIM's signature still verifies"
    row = history(msg["Subject"])
    assert row["user"] == sender and row["action"] == "no action", row
    assert row["score"] >= 6, "scored as the world's spam is: only the action differs"


def test_rspamd_listens_on_loopback_only(lab_apply):
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    rspamd = [line.split()[3] for line in out.splitlines() if '"rspamd"' in line]
    assert sorted(rspamd) == ["127.0.0.1:11332", "127.0.0.1:11333", "127.0.0.1:11334"], rspamd


def test_controller_asks_every_client_for_the_password_kept_on_the_host(lab_apply):
    st = os.stat(PASSWORD_FILE)
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
    pw = open(PASSWORD_FILE).read().strip()
    assert len(pw) >= 24
    assert controller("/stat", None)[0] in (401, 403)
    assert controller("/stat", "q1")[0] in (401, 403), "Debian's default password refused"
    assert controller("/stat", pw + "x")[0] in (401, 403)
    status, body = controller("/stat", pw)
    assert status == 200 and b"scanned" in body
    # Only its hash is in rspamd's configuration, readable by rspamd alone.
    found = subprocess.run(["grep", "-rlF", pw, "/etc/rspamd", "--exclude=controller.password"],
                           capture_output=True, text=True)
    assert found.stdout == "", found.stdout
    inc = os.stat("/etc/rspamd/local.d/controller-password.inc")
    assert stat.S_IMODE(inc.st_mode) & 0o007 == 0


def test_a_broken_rspamd_setting_is_refused_before_it_goes_live(lab_apply):
    live = {f: open(f).read() for f in RSPAMD_FILES}
    # A reply text that ends the string and opens a section never closed.
    result = playbook("-e", json.dumps({"rspamd_reject_message": 'x";\nbogus = {'}))
    assert result.returncode != 0
    assert "failed to validate" in result.stdout, result.stdout[-3000:]
    assert "unmatched open brace" in result.stdout or "syntax BAD" in result.stdout
    assert {f: open(f).read() for f in RSPAMD_FILES} == live
    assert recap(result.stdout)["lab"]["failed"] == 1
    # rspamd still filters.
    out = subprocess.run(["rspamc", "-h", "127.0.0.1:11333"], input=f"Subject: t\n\n{GTUBE}\n",
                         capture_output=True, text=True, timeout=30)
    assert "Action: reject" in out.stdout, out.stdout + out.stderr

