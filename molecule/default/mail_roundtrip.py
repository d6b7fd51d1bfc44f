"""Molecule verify: one mail from the world to a mailbox, read back by its holder.

Sent on port 25 with STARTTLS as another mail server would, then read over
IMAPS with the holder's password from the encrypted register (the password
never leaves this process: not in arguments, output or logs), then deleted.
Exit 0 once the mail is read with its body; a message and exit 1 otherwise.

Usage: mail_roundtrip.py REGISTER VAULT_PASSWORD_FILE CA_FILE SERVER_NAME ADDRESS
"""

from __future__ import annotations

import imaplib
import smtplib
import sys
import time
import uuid
from email.message import EmailMessage

from sop.postcheck import tls_context
from sop.register import Register, vault_password


def main(register: str, password_file: str, ca_file: str, server_name: str,
         address: str) -> int:
    secret = Register(register, vault_password(password_file)).accounts[address]["password"]
    token = uuid.uuid4().hex
    msg = EmailMessage()
    msg["From"], msg["To"] = "penguji@example.net", address
    msg["Subject"] = f"molecule verify {token}"
    msg.set_content(f"isi {token}\n")
    context = tls_context(ca_file, server_name)
    with smtplib.SMTP("127.0.0.1", 25, timeout=20) as smtp:
        smtp.ehlo("penguji.example.net")
        smtp.starttls(context=context)
        smtp.send_message(msg)
    for _ in range(60):  # delivery is asynchronous: up to about 30 s
        with imaplib.IMAP4_SSL("127.0.0.1", 993, ssl_context=context, timeout=20) as imap:
            imap.login(address, secret)
            imap.select("INBOX")
            found = imap.search(None, "SUBJECT", f'"{token}"')[1][0].split()
            if found:
                body = imap.fetch(found[0], "(BODY[TEXT])")[1][0][1]
                imap.store(found[0], "+FLAGS", "\\Deleted")
                imap.expunge()
                if f"isi {token}".encode() not in body:
                    print(f"{address}: the mail arrived without its body")
                    return 1
                print(f"{address}: delivered and read")
                return 0
        time.sleep(0.5)
    print(f"{address}: the mail was not delivered")
    return 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
