"""A real browser on the lab's webmail: Debian's Chromium driven by Playwright.

The browser trusts the lab's CA through a private NSS database
(its own HOME), as a user's browser trusts a real CA: nothing ignores
certificate errors. It resolves the webmail's name to 127.0.0.1 and no other
name at all, so it talks to the lab and nowhere else.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .conftest import REPO
from .mailclient import ZONE

WEBMAIL = f"webmail.{ZONE}"
CHROMIUM = "/usr/bin/chromium"
# The lab's CA (role lab_pki): it signed the webmail's certificate.
WEB_CA = "/etc/sop-lab-ca/ca.crt"
# Roundcube's Indonesian messages (program/localization/id_ID/messages.inc).
LOGIN_FAILED = "Login gagal"
LOGGED_OUT = "sukses mengakhiri sesi"
SENT = "Pesan berhasil dikirim"
FAILURE_SHOT = REPO / ".lab" / "webmail-failure.png"


def _nss_home(folder: Path, trust: bool) -> Path:
    """A HOME whose NSS database trusts the lab's web CA (or nothing)."""
    db = folder / ".pki" / "nssdb"
    db.mkdir(parents=True, exist_ok=True)
    subprocess.run(["certutil", "-N", "-d", f"sql:{db}", "--empty-password"], check=True)
    if trust:
        subprocess.run(["certutil", "-A", "-d", f"sql:{db}", "-n", "sop-lab-web-ca",
                        "-t", "C,,", "-i", WEB_CA], check=True)
    return folder


@contextmanager
def browser(folder: Path, trust: bool = True) -> Iterator:
    """A headless Chromium page; ``folder`` holds its HOME."""
    from playwright.sync_api import sync_playwright

    home = _nss_home(folder, trust)
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            # The webmail's name is the lab; every other name is unknown.
            args=[f"--host-resolver-rules=MAP {WEBMAIL} 127.0.0.1, MAP * ~NOTFOUND"],
            env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
        )
        try:
            ctx = b.new_context(locale="en-US", viewport={"width": 1280, "height": 800})
            page = ctx.new_page()
            page.set_default_timeout(20_000)
            try:
                yield page
            except Exception:
                # What the browser showed when the test failed, for the reader.
                page.screenshot(path=str(FAILURE_SHOT))
                FAILURE_SHOT.with_suffix(".html").write_text(page.content())
                raise
        finally:
            b.close()


def login(page, url: str, user: str, password: str) -> bool:
    """Log in at the login form of ``url``; True once the mailbox shows,
    False when Roundcube says the login failed."""
    page.goto(url)
    page.fill("input[name=_user]", user)
    page.fill("input[name=_pass]", password)
    page.click("button[type=submit]")
    mailbox = page.locator("#messagelist")
    failed = page.get_by_text(LOGIN_FAILED)
    mailbox.or_(failed).first.wait_for()
    return mailbox.is_visible()


def https(path: str, tls: bool = True) -> tuple[int, dict, bytes]:
    """A request for the webmail's name to the lab's nginx (its certificate
    checked against the lab's CA for that name), or over plain HTTP."""
    if tls:
        ctx = ssl.create_default_context(cafile=WEB_CA)
        conn = http.client.HTTPSConnection(WEBMAIL, 443, context=ctx, timeout=10)
        conn.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", 443), 10),
                                    server_hostname=WEBMAIL)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", 80, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": WEBMAIL})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()
