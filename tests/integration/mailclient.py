"""Mail clients for the integration tests: what an agency's mail program does.

Every login goes over TLS with the certificate verified against the lab's CA
for the mail host's name (the lab connects to 127.0.0.1; the certificate is
for mail.<zone>).
"""

from __future__ import annotations

import imaplib
import json
import smtplib
import subprocess
import time
from email.message import EmailMessage

import dns.message
import dns.query
import dns.rdatatype

from sop.postcheck import tls_context

HOST = "127.0.0.1"
ZONE = "sumbabaratdayakab.go.id"
MAIL_HOST = f"mail.{ZONE}"
CA_FILE = "/etc/sop-lab-ca/ca.crt"
DNS = "127.0.0.1"


def context():
    return tls_context(CA_FILE, MAIL_HOST)


def imaps(address: str, password: str) -> imaplib.IMAP4_SSL:
    """Logged-in IMAP over implicit TLS (port 993)."""
    imap = imaplib.IMAP4_SSL(HOST, 993, ssl_context=context(), timeout=20)
    imap.login(address, password)
    return imap


def imap_starttls(address: str, password: str) -> imaplib.IMAP4:
    """Logged-in IMAP on port 143 after STARTTLS."""
    imap = imaplib.IMAP4(HOST, 143, timeout=20)
    imap.starttls(ssl_context=context())
    imap.login(address, password)
    return imap


def message(sender: str, to: str, subject: str, body: str = "Pesan uji dari lab.\n"):
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(body)
    return msg


def send(to: str, subject: str, sender: str = "penguji@example.net", body: str | None = None):
    """Mail from the world: port 25, STARTTLS as a well-behaved MTA does."""
    msg = message(sender, to, subject, body or "Pesan uji dari lab.\n")
    with smtplib.SMTP(HOST, 25, timeout=20) as smtp:
        smtp.ehlo("penguji.example.net")
        smtp.starttls(context=context())
        smtp.send_message(msg)


def submit(login: str, password: str, msg: EmailMessage, port: int = 587) -> None:
    """A holder's mail program: port 587 with STARTTLS (or 465, TLS), then AUTH."""
    if port == 465:
        smtp = smtplib.SMTP_SSL(HOST, 465, context=context(), timeout=20)
    else:
        smtp = smtplib.SMTP(HOST, port, timeout=20)
    with smtp:
        smtp.ehlo("klien.example.net")
        if port != 465:
            smtp.starttls(context=context())
            smtp.ehlo("klien.example.net")
        smtp.login(login, password)
        smtp.send_message(msg)


def fetch_by_subject(address: str, password: str, subject: str,
                     timeout: float = 20) -> list[bytes]:
    """Raw messages whose subject contains ``subject``, waiting for delivery."""
    deadline = time.monotonic() + timeout
    while True:
        with imaps(address, password) as imap:
            imap.select("INBOX", readonly=True)
            typ, data = imap.search(None, "SUBJECT", f'"{subject}"')
            found = []
            for num in data[0].split() if typ == "OK" else []:
                _, parts = imap.fetch(num, "(BODY.PEEK[])")
                found.append(parts[0][1])
            imap.logout()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def txt(name: str) -> list[str]:
    """TXT records at the lab DNS, each as one joined string."""
    q = dns.message.make_query(name, "TXT")
    r = dns.query.udp(q, DNS, timeout=3)
    return sorted(b"".join(rd.strings).decode() for rrset in r.answer
                  if rrset.rdtype == dns.rdatatype.TXT for rd in rrset)


def lab_dns_txt(name, timeout=5):
    """dkimpy's dnsfunc, asking the lab's authoritative server."""
    if isinstance(name, bytes):
        name = name.decode()
    found = txt(name.rstrip("."))
    return found[0].encode() if found else None


def queue() -> list[dict]:
    """Postfix's queue, one entry per message (postqueue -j)."""
    out = subprocess.run(["postqueue", "-j"], capture_output=True, text=True, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def doveadm(*args: str) -> str:
    return subprocess.run(["doveadm", *args], capture_output=True, text=True,
                          check=True).stdout
