"""Agency mail on the lab, observed as a mail program and the world see it.

Delivery to every mailbox and alias (forwarders to outside addresses are
queued, never delivered: the lab holds outside mail), logins only over TLS,
no relay, unknown and full mailboxes refused at RCPT time with warnings
before that, and mail sent by a holder signed with a DKIM key that the lab
DNS publishes beside the SPF and DMARC records.
"""

from __future__ import annotations

import email
import imaplib
import smtplib
import socket
import time
import uuid

import dkim
import pytest

from .conftest import playbook, recap, snapshot
from .mailclient import (
    HOST,
    ZONE,
    context,
    doveadm,
    fetch_by_subject,
    imap_starttls,
    imaps,
    lab_dns_txt,
    message,
    queue,
    send,
    submit,
    txt,
)


def mailboxes(requests):
    return [b for r in requests if r["mail"] for b in r["mail"]["mailboxes"]]


def password(register, address):
    return register.accounts[address]["password"]


def uid() -> str:
    return uuid.uuid4().hex[:12]


# --- Delivery -------------------------------------------------------------

def test_mail_to_every_mailbox_is_delivered_and_read_over_imaps(requests, register):
    boxes = mailboxes(requests)
    domains = {b["address"].split("@")[1] for b in boxes}
    assert ZONE in domains and len(domains) > 1, "both mail-domain forms must be exercised"
    subjects = {}
    for box in boxes:
        subjects[box["address"]] = f"uji-{uid()}"
        send(box["address"], subjects[box["address"]])
    for box in boxes:
        found = fetch_by_subject(box["address"], password(register, box["address"]),
                                 subjects[box["address"]])
        assert len(found) == 1, box["address"]


def test_mail_to_every_alias_reaches_each_local_target_and_queues_outside_ones(
        requests, register):
    aliases = [a for r in requests if r["mail"] for a in r["mail"]["aliases"]]
    assert any("@" in t and not t.endswith(ZONE) for a in aliases for t in a["to"]), \
        "the lab examples must include a forwarder to an outside address"
    local = {b["address"] for b in mailboxes(requests)}
    for alias in aliases:
        subject = f"alias-{uid()}"
        sender = f"penguji-{uid()}@example.net"
        send(alias["address"], subject, sender=sender)
        for target in alias["to"]:
            if target in local:
                assert fetch_by_subject(target, password(register, target), subject), target
        outside = sorted(t for t in alias["to"] if t not in local)
        if outside:
            _assert_held_for_outside(sender, outside)


def _assert_held_for_outside(sender: str, outside: list[str]) -> None:
    """Accepted and queued for the outside domain, deferred: the lab never
    delivers outside. The test removes its message from the queue."""
    deadline = time.monotonic() + 20
    entries = []
    while time.monotonic() < deadline:
        entries = [e for e in queue() if e["sender"] == sender]
        if entries and all(e["queue_name"] == "deferred" for e in entries):
            break
        time.sleep(0.5)
    try:
        assert entries, f"nothing queued from {sender}"
        recipients = sorted(r["address"] for e in entries for r in e["recipients"])
        assert recipients == outside
        assert all(e["queue_name"] == "deferred" for e in entries), entries
        reasons = " ".join(r.get("delay_reason", "") for e in entries for r in e["recipients"])
        assert "lab_keeps_outside_mail_queued" in reasons
    finally:
        import subprocess

        for e in entries:
            subprocess.run(["postsuper", "-d", e["queue_id"]], capture_output=True, check=False)


def test_unknown_recipient_is_refused_at_rcpt(requests):
    with smtplib.SMTP(HOST, 25, timeout=10) as smtp:
        smtp.ehlo("penguji.example.net")
        smtp.mail("penguji@example.net")
        code, _ = smtp.rcpt(f"tidakada@dukcapil.{ZONE}")
        assert code == 550
        code, _ = smtp.rcpt(f"layanan@dukcapil.{ZONE}")
        assert code == 250, "a known mailbox in the same session is accepted"


# --- Relay ----------------------------------------------------------------

def test_relay_to_outside_without_authentication_is_refused(lab_apply):
    with smtplib.SMTP(HOST, 25, timeout=10) as smtp:
        smtp.ehlo("penguji.example.net")
        smtp.starttls(context=context())
        smtp.ehlo("penguji.example.net")
        assert "auth" not in smtp.esmtp_features, "port 25 offers no AUTH"
        smtp.mail("penguji@example.net")
        code, _ = smtp.rcpt("someone@example.org")
    assert code in (454, 554)
    with smtplib.SMTP(HOST, 587, timeout=10) as smtp:
        smtp.ehlo("klien.example.net")
        smtp.starttls(context=context())
        smtp.ehlo("klien.example.net")
        code, _ = smtp.mail(f"layanan@dukcapil.{ZONE}")
        if code == 250:
            code, _ = smtp.rcpt("someone@example.org")
    assert code >= 500, "submission without login accepts nothing"


# --- Logins: TLS only ---------------------------------------------------------

def test_imap_logs_in_over_starttls_and_imaps_with_the_registered_password(requests, register):
    box = mailboxes(requests)[0]["address"]
    for connect in (imap_starttls, imaps):
        imap = connect(box, password(register, box))
        typ, _ = imap.select("INBOX", readonly=True)
        assert typ == "OK"
        assert imap.sock.version() in ("TLSv1.2", "TLSv1.3")
        imap.logout()


def test_a_wrong_password_is_refused(requests):
    box = mailboxes(requests)[0]["address"]
    with pytest.raises(imaplib.IMAP4.error):
        imaps(box, "salah-salah-salah").logout()


def _penalty(ip: str = "127.0.0.1") -> int:
    """Dovecot's authentication penalty for an address (0 when it has none)."""
    for line in doveadm("penalty").splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == ip:
            return int(fields[1])
    return 0


def test_the_post_check_s_refused_logins_leave_no_penalty_behind(requests, register, settings):
    """Each refused password raises Dovecot's penalty for the address it came
    from, and the penalty (up to 15 s) then delays every login from there:
    the next post-check's and, behind the webmail, every staff member's. The
    post-check refuses suspended mailboxes on purpose; it must end with the
    penalty cleared."""
    from sop import postcheck

    reqs = [r for r in requests if r["mail"] and r["mail"]["mailboxes"]]
    good, victim = reqs[0], {**reqs[1], "status": "suspended", "hosting": None}
    wrong = victim["mail"]["mailboxes"][0]["address"]
    credentials = {**register.accounts, wrong: {"password": f"salah-{uid()}"}}
    cfg = {**settings.get("sop_postcheck"),
           "webmail_host": settings.get("sop_webmail")["hostname"]}
    first = good["mail"]["mailboxes"][0]["address"]
    postcheck.check_imap(good, first, password(register, first), cfg, timeout=30)
    # The control: a refusal alone leaves a penalty.
    assert postcheck.check_imap(victim, wrong, f"salah-{uid()}", cfg, suspended=True)["ok"]
    assert _penalty() > 0, "a refused login left no penalty: this test proves nothing"

    results = postcheck.run_postchecks([victim, good], credentials, cfg,
                                       changed={good["subdomain"]})
    assert all(r["ok"] for r in results), [r for r in results if not r["ok"]]
    refused = [r for r in results if r["target"] == wrong]
    assert [r["check"] for r in refused] == ["imap", "webmail"]
    assert all("ditolak" in r["detail"] for r in refused)
    assert _penalty() == 0


def _read_until(sock: socket.socket, marker: bytes) -> bytes:
    """Server lines up to and including the one that starts with ``marker``."""
    data = b""
    while not any(line.startswith(marker) for line in data.split(b"\r\n")[:-1]):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_plaintext_imap_login_without_tls_is_refused(requests, register):
    """A client on another address (127.0.0.2: Dovecot trusts only a client
    whose address is the server's own) sends the right password in clear."""
    box = mailboxes(requests)[0]["address"]
    secret = password(register, box)
    with socket.create_connection((HOST, 143), timeout=10,
                                  source_address=("127.0.0.2", 0)) as sock:
        greeting = _read_until(sock, b"* OK")
        assert b"LOGINDISABLED" in greeting and b"STARTTLS" in greeting
        sock.sendall(f'a1 LOGIN "{box}" "{secret}"\r\n'.encode())
        reply = _read_until(sock, b"a1 ")
    assert b"\r\na1 NO [PRIVACYREQUIRED]" in b"\r\n" + reply, reply


def test_smtp_auth_without_tls_is_refused(requests, register):
    box = mailboxes(requests)[0]["address"]
    with smtplib.SMTP(HOST, 587, timeout=10) as smtp:
        smtp.ehlo("klien.example.net")
        assert "auth" not in smtp.esmtp_features, "no AUTH offered before STARTTLS"
        assert "starttls" in smtp.esmtp_features
        code, _ = smtp.docmd("AUTH", "PLAIN AGZvbwBiYXI=")  # "\0foo\0bar"
        assert code >= 500
        code, _ = smtp.mail(box)
        assert code == 530, "mail before STARTTLS is refused"


# --- Quota ----------------------------------------------------------------

SMALL = f"arsip@dukcapil.{ZONE}"


def _empty(address):
    doveadm("expunge", "-u", address, "mailbox", "*", "all")
    doveadm("quota", "recalc", "-u", address)


def _storage_bytes(address) -> int:
    for line in doveadm("-f", "tab", "quota", "get", "-u", address).splitlines()[1:]:
        cols = line.split("\t")
        if cols[1] == "STORAGE":
            return int(cols[2]) * 1024
    raise AssertionError("no STORAGE quota line")


def _body(size: int) -> str:
    line = "Isi uji kuota, baris berisi teks biasa untuk mengisi kotak surat.\n"
    return line * (size // len(line) + 1)


@pytest.fixture
def small_mailbox(requests, register):
    box = next(b for b in mailboxes(requests) if b["address"] == SMALL)
    assert box["quota_bytes"] == 1 << 20, "the lab example's test mailbox has a 1M quota"
    _empty(SMALL)
    yield box
    _empty(SMALL)


def test_quota_warns_at_80_and_95_percent_then_refuses_at_rcpt(small_mailbox, register):
    secret = password(register, SMALL)
    quota = small_mailbox["quota_bytes"]
    first = f"isi-{uid()}"
    send(SMALL, first, body=_body(int(quota * 0.83)))
    assert fetch_by_subject(SMALL, secret, first)
    assert fetch_by_subject(SMALL, secret, "terpakai 80%"), "warning at 80%"
    assert not fetch_by_subject(SMALL, secret, "terpakai 95%", timeout=1)
    second = f"isi-{uid()}"
    send(SMALL, second, body=_body(int(quota * 0.13)))
    assert fetch_by_subject(SMALL, secret, second)
    assert fetch_by_subject(SMALL, secret, "terpakai 95%"), "warning at 95%"
    used = _storage_bytes(SMALL)
    assert 0.95 * quota < used <= quota
    # A message that does not fit is refused at RCPT (Dovecot's quota-status
    # through Postfix's policy check), before any data is sent.
    with smtplib.SMTP(HOST, 25, timeout=10) as smtp:
        smtp.ehlo("penguji.example.net")
        smtp.mail("penguji@example.net", options=[f"SIZE={quota - used + 4096}"])
        code, text = smtp.rcpt(SMALL)
    assert code == 552, text
    assert b"5.2.2" in text
    assert _storage_bytes(SMALL) == used


# --- DKIM, SPF, DMARC ---------------------------------------------------------

def test_every_mail_domain_publishes_spf_dmarc_and_dkim(requests):
    domains = sorted({r["mail"]["address_domain"] for r in requests if r["mail"]})
    for domain in domains:
        assert "v=spf1 mx -all" in txt(domain), domain
        dmarc = txt(f"_dmarc.{domain}")
        assert len(dmarc) == 1 and dmarc[0].startswith("v=DMARC1; p=quarantine"), domain
        assert f"rua=mailto:dmarc@{ZONE}" in dmarc[0]
        key = txt(f"mail._domainkey.{domain}")
        assert len(key) == 1 and key[0].startswith("v=DKIM1;") and "p=MII" in key[0], domain
        assert len(key[0]) > 255, "a 2048-bit key needs more than one TXT string"


def test_mail_sent_through_submission_is_dkim_signed(requests, register):
    req = next(r for r in requests if r["mail"] and len(r["mail"]["mailboxes"]) > 1)
    sender, rcpt = (b["address"] for b in req["mail"]["mailboxes"][:2])
    domain = sender.split("@")[1]
    for port in (587, 465):
        subject = f"dkim-{port}-{uid()}"
        submit(sender, password(register, sender),
               message(sender, rcpt, subject, "Surat resmi bertanda tangan DKIM.\n"), port=port)
        raw = fetch_by_subject(rcpt, password(register, rcpt), subject)
        assert len(raw) == 1, port
        header = email.message_from_bytes(raw[0])["DKIM-Signature"]
        assert header, "no DKIM-Signature"
        tags = dict(t.strip().split("=", 1) for t in "".join(header.split()).split(";") if t)
        assert (tags["d"], tags["s"], tags["a"]) == (domain, "mail", "rsa-sha256")
        assert dkim.verify(raw[0], dnsfunc=lab_dns_txt), "signature verifies with the lab DNS key"
        tampered = raw[0].replace(b"bertanda tangan", b"DIUBAH di jalan")
        assert not dkim.verify(tampered, dnsfunc=lab_dns_txt)


def test_submission_refuses_a_sender_the_login_does_not_own(requests, register):
    req = next(r for r in requests if r["mail"] and len(r["mail"]["mailboxes"]) > 1)
    login, other = (b["address"] for b in req["mail"]["mailboxes"][:2])
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        submit(login, password(register, login), message(other, login, f"palsu-{uid()}"))


# --- Bad input ------------------------------------------------------------

@pytest.mark.parametrize("variable", ["dovecot_tls_cert", "postfix_tls_key"])
def test_a_missing_certificate_stops_the_mail_play_before_any_change(lab_apply, variable):
    before = snapshot()
    result = playbook("-e", f"{variable}=/nonexistent/mail.pem")
    assert result.returncode != 0
    assert "Missing on lab" in result.stdout, result.stdout[-2000:]
    assert "/nonexistent/mail.pem" in result.stdout and variable in result.stdout
    assert snapshot() == before
    assert all(c["changed"] == 0 for c in recap(result.stdout).values())
