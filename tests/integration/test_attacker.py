"""The web host as one agency's attacker sees it (issue 16).

The attacker holds one agency's hosting account: its SFTP login and the PHP
its site runs. From there, nothing of another agency, of the mail and DNS
servers' secrets, or of the register may be read: not by publishing a link
through nginx, not by PHP's file functions, not by leaving PHP's sandbox to
start a program, and not as the account's own Unix user. Its own files still
serve.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from .conftest import REPO
from .test_web import account, get, remove, sites, ssh, upload

# Files no hosting account may read, whatever way it tries.
SECRETS = [
    "/etc/opendkim/keys/sumbabaratdayakab.go.id/mail.private",
    "/etc/opendkim/keys/dinkes.sumbabaratdayakab.go.id/mail.private",
    "/etc/bind/transfer.key",
    "/etc/dovecot/users",
    "/etc/shadow",
]


def _pair(requests) -> tuple[dict, dict]:
    """The attacker (a PHP site) and its victim (another agency's site)."""
    php = [r for r in sites(requests) if r["hosting"].get("php")]
    assert php, "the lab examples must include a PHP site"
    victims = [r for r in sites(requests) if r is not php[0]]
    assert victims, "the lab examples must include two hosting agencies"
    return php[0], victims[0]


def _register_file(settings) -> Path:
    return settings.path("sop_register_file")


def _link(req, register, target: str, name: str) -> None:
    """Make public/<name> -> target over the agency's own SFTP login."""
    client = ssh(*account(req, register))
    try:
        with client.open_sftp() as sftp:
            sftp.symlink(target, f"/public/{name}")
    finally:
        client.close()


# --- links published through nginx --------------------------------------------

def test_a_link_out_of_the_site_is_not_served(requests, register):
    attacker, victim = _pair(requests)
    marker = f"victim-{uuid.uuid4().hex}"
    upload(victim, register, "rahasia.html", marker)
    upload(attacker, register, "own.html", "own file")
    targets = {
        "leak-passwd.txt": "/etc/passwd",
        "leak-victim.html": f"/srv/www/{victim['subdomain']}/public/rahasia.html",
        "leak-dkim.txt": SECRETS[0],
    }
    try:
        for name, target in targets.items():
            _link(attacker, register, target, name)
        for tls in (False, True):
            status, _, body = get(attacker["fqdn"], "/own.html", tls=tls)
            assert (status, body) == (200, "own file"), "the agency's own files still serve"
            for name, target in targets.items():
                status, _, body = get(attacker["fqdn"], f"/{name}", tls=tls)
                assert status in (403, 404), (name, target, status)
                assert "root:" not in body and marker not in body, (name, target)
        # The victim's file is there and served on its own site: the refusal
        # above is the link's, not a missing file's.
        assert get(victim["fqdn"], "/rahasia.html")[2] == marker
    finally:
        for name in [*targets, "own.html"]:
            remove(attacker, register, name)
        remove(victim, register, "rahasia.html")


def test_a_link_to_the_agencys_own_file_still_serves(requests, register):
    attacker, _ = _pair(requests)
    upload(attacker, register, "asli.html", "asli")
    try:
        _link(attacker, register, "asli.html", "tautan.html")
        assert get(attacker["fqdn"], "/tautan.html")[:3:2] == (200, "asli")
    finally:
        remove(attacker, register, "tautan.html")
        remove(attacker, register, "asli.html")
