"""Webmail on the lab (issue 18): Roundcube from Debian in a real browser.

Debian's Chromium, driven by Playwright, goes to the webmail address the
printout gives, logs in with a mailbox address and the password printed
beside it, opens a message delivered over SMTP just before, replies (the
reply arrives, seen over IMAP) and logs out. A wrong password is refused,
the page is Indonesian, and a browser that does not trust the lab's CA does
not get the page at all. Suspended and archived mailboxes are refused in
tests/integration/test_lifecycle.py, where the lab has them.

A screenshot of the opened message is kept in .lab/webmail-message.png.
"""

from __future__ import annotations

import email
import email.policy
import re
import subprocess
import uuid

import pytest

from .conftest import REPO
from .mailclient import fetch_by_subject, message, submit
from .webmail import LOGGED_OUT, LOGIN_FAILED, SENT, WEBMAIL, browser, https, login

SCREENSHOT = REPO / ".lab" / "webmail-message.png"


def printout(settings, label: str) -> dict:
    """The webmail address and the mailboxes with their passwords, as printed."""
    pdf = settings.state_dir / "printouts" / f"{label}.pdf"
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                          text=True, check=True).stdout
    url = re.search(r"Webmail \(peramban\)\s+(https://\S+)", text)
    assert url, "no webmail address on the printout"
    boxes = dict(re.findall(r"^\s*\d+\s+(\S+@\S+)\s+(\w{4}-\w{4}-\w{4}-\w{4})\s*$", text, re.M))
    assert len(boxes) >= 2, "the printout lists two mailboxes with passwords"
    return {"url": url[1], "boxes": boxes}


@pytest.fixture(scope="module")
def paper(lab_apply, settings):
    return printout(settings, "dinkes")


def test_the_printout_gives_the_webmail_address(paper):
    assert paper["url"] == f"https://{WEBMAIL}/"


def test_read_reply_and_log_out_in_a_browser(paper, tmp_path):
    (reader, reader_pw), (writer, writer_pw) = list(paper["boxes"].items())[:2]
    subject = f"Uji webmail {uuid.uuid4().hex[:10]}"
    token = f"balasan-{uuid.uuid4().hex[:10]}"
    original = message(writer, reader, subject, "Mohon dibalas melalui webmail.\n")
    original["Message-ID"] = f"<{uuid.uuid4().hex}@klien.example.net>"
    submit(writer, writer_pw, original)
    assert fetch_by_subject(reader, reader_pw, subject), "the message was delivered"

    with browser(tmp_path) as page:
        assert login(page, paper["url"], reader, reader_pw), "the printout's password logs in"
        # Bahasa Indonesia: the page's language and the logout link.
        assert page.locator("html").get_attribute("lang") == "id"
        assert page.locator("a.logout").inner_text().strip() == "Keluar"
        page.locator("#messagelist tr", has_text=subject).dblclick()
        page.get_by_text("Mohon dibalas melalui webmail.").wait_for()
        page.screenshot(path=str(SCREENSHOT))
        page.locator('a.reply[title="Balas ke pengirim"]').click()
        body = page.locator("#composebody")
        body.wait_for()
        body.fill(f"{token}\n")
        page.locator("button.send, a.send").filter(visible=True).first.click()
        page.get_by_text(SENT).wait_for()
        page.locator("a.logout").click()
        page.get_by_text(LOGGED_OUT).wait_for()
        # The session is over: the mailbox asks for a login again.
        page.goto(f"{paper['url']}?_task=mail")
        assert page.locator("input[name=_pass]").is_visible()

    replies = fetch_by_subject(writer, writer_pw, f"Re: {subject}")
    assert replies, "the reply sent from the webmail arrived"
    reply = email.message_from_bytes(replies[0], policy=email.policy.default)
    assert reply["From"].addresses[0].addr_spec == reader
    assert reply["In-Reply-To"] == original["Message-ID"]
    assert token in reply.get_body(("plain",)).get_content()


def test_a_wrong_password_is_refused(paper, tmp_path):
    address, password = next(iter(paper["boxes"].items()))
    with browser(tmp_path) as page:
        assert not login(page, paper["url"], address, password[::-1])
        assert page.get_by_text(LOGIN_FAILED).is_visible()
        # Nor does the address without its domain log in, with the right password.
        assert not login(page, paper["url"], address.split("@")[0], password)


def test_a_browser_without_the_lab_ca_gets_no_page(paper, tmp_path):
    from playwright.sync_api import Error

    with browser(tmp_path, trust=False) as page, pytest.raises(Error, match="ERR_CERT"):
        page.goto(paper["url"])


def test_plain_http_goes_to_https_and_nothing_but_the_entry_point_is_served(lab_apply):
    status, headers, _ = https("/?_task=mail", tls=False)
    assert status == 301 and headers["location"] == f"https://{WEBMAIL}/?_task=mail"
    status, headers, body = https("/")
    assert status == 200 and b"Webmail" in body
    assert headers["strict-transport-security"].startswith("max-age=")
    # Roundcube's settings, database, logs, code and installer stay out of reach.
    for path in ("/config/config.inc.php", "/../config/config.inc.php", "/SQL/sqlite.initial.sql",
                 "/program/include/iniset.php", "/installer/", "/logs/errors.log",
                 "/temp/", "/.htaccess", "/plugins/jqueryui/jqueryui.php", "/bin/gc.sh"):
        status, _, body = https(path)
        assert status in (400, 404) and b"des_key" not in body and b"<?php" not in body, path
