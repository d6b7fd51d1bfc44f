"""The web host as one agency's attacker sees it (issue 16).

The attacker holds one agency's hosting account: its SFTP login and the PHP
its site runs. From there, nothing of another agency, of the mail and DNS
servers' secrets, or of the register may be read: not by publishing a link
through nginx, not by PHP's file functions, not by leaving PHP's sandbox to
start a program, and not as the account's own Unix user. Its own files still
serve.
"""

from __future__ import annotations

import email
import json
import smtplib
import subprocess
import uuid
from pathlib import Path

from .mailclient import fetch_by_subject, send
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


# --- the agency's PHP ------------------------------------------------------------

# Each attempt either answers "refused" (a disabled function, a file outside
# open_basedir) or what it got; nothing may come back but "refused".
PROBE = r"""<?php
$out = [];
$try = function (string $name, callable $f) use (&$out) {
    try {
        $r = @$f();
        $out[$name] = ($r === false || $r === null) ? 'refused' : (string) $r;
    } catch (\Throwable $e) {
        $out[$name] = 'refused';
    }
};
$try('putenv', fn () => putenv('LD_PRELOAD=/tmp/x.so') ? 'set' : false);
$try('mail', fn () => mail('root@localhost', 'x', 'x') ? 'sent' : false);
$try('mb_send_mail', fn () => mb_send_mail('root@localhost', 'x', 'x') ? 'sent' : false);
$try('error_log', fn () => error_log('x', 1, 'root@localhost') ? 'sent' : false);
$try('exec', fn () => exec('id'));
$try('shell_exec', fn () => shell_exec('id'));
$try('system', fn () => system('id'));
$try('passthru', function () { ob_start(); passthru('id'); return ob_get_clean() ?: false; });
$try('popen', fn () => popen('id', 'r') ? 'opened' : false);
$try('proc_open', fn () => proc_open(['id'], [], $pipes) ? 'opened' : false);
$try('dl', fn () => dl('x.so') ? 'loaded' : false);
$try('symlink', fn () => symlink('/etc/passwd', __DIR__ . '/l.txt') ? 'made' : false);
foreach (json_decode($_GET['files'] ?? '[]', true) as $f) {
    $try('read ' . $f, fn () => file_get_contents($f));
    $try('list ' . dirname($f), fn () => implode(',', scandir(dirname($f)) ?: []) ?: false);
}
echo json_encode($out);
"""


def test_php_can_start_no_program_send_no_mail_and_read_nothing_outside_its_site(
        requests, register, settings):
    attacker, victim = _pair(requests)
    marker = f"victim-{uuid.uuid4().hex}"
    upload(victim, register, "rahasia.html", marker)
    files = [f"/srv/www/{victim['subdomain']}/public/rahasia.html",
             "/etc/passwd", str(settings.path("sop_register_file")), *SECRETS]
    name = f"probe-{uuid.uuid4().hex[:8]}.php"
    upload(attacker, register, name, PROBE)
    try:
        from urllib.parse import quote

        status, _, body = get(attacker["fqdn"], f"/{name}?files={quote(json.dumps(files))}")
        assert status == 200, body
        got = json.loads(body)
        assert {"putenv", "mail", "exec", f"read {files[0]}", f"read {files[2]}"} <= set(got), got
        escaped = {k: v for k, v in got.items() if v != "refused"}
        assert not escaped, escaped
    finally:
        remove(attacker, register, name)
        remove(victim, register, "rahasia.html")


def test_debians_default_www_pool_is_gone():
    """The www pool ran PHP as www-data, the web server that reads every site."""
    assert not Path("/etc/php/8.2/fpm/pool.d/www.conf").exists()
    assert not Path("/run/php/php8.2-fpm.sock").exists()


# --- the agency's SFTP login ---------------------------------------------------------

def test_sftp_reaches_nothing_outside_the_accounts_own_folder(requests, register, settings):
    attacker, victim = _pair(requests)
    client = ssh(*account(attacker, register))
    try:
        with client.open_sftp() as sftp:
            # The chroot: "/" is the account's home, nothing of the host in it.
            assert sorted(sftp.listdir("/")) == ["public"]
            for path in ["/etc/passwd", f"/srv/www/{victim['subdomain']}/public",
                         "/../../etc/passwd", str(settings.path("sop_register_file")),
                         *SECRETS]:
                try:
                    sftp.stat(path)
                except OSError:
                    continue
                raise AssertionError(f"{path} is visible over SFTP")
    finally:
        client.close()


# --- the agency's own Unix account (what its PHP would run as, were it out) ----------

def _as(user: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", user, "--", *argv], capture_output=True,
                          text=True, check=False)


def test_the_account_reads_no_secret_no_register_and_no_log(requests, register, settings):
    attacker, victim = _pair(requests)
    user = account(attacker, register)[0]
    assert _as(user, "cat", f"/srv/www/{attacker['subdomain']}/public/index.html").returncode \
        == 0, "the account reads its own site"
    logs = [f"/var/log/nginx/{victim['subdomain']}.access.log", "/var/log/postfix.log"]
    for path in [*SECRETS, str(settings.path("sop_register_file")), *logs]:
        result = _as(user, "cat", path)
        assert result.returncode != 0 and result.stdout == "", path
    for path in logs:
        assert Path(path).exists(), path


def test_a_local_process_gets_no_agencys_dkim_signature(requests, register):
    """SMTP from 127.0.0.1 on port 25 (a site's PHP could open that socket) in
    another agency's name is not signed with that agency's key."""
    _, victim = _pair(requests)
    box = next(r for r in requests if r["mail"] and r["mail"]["domain"] == "subdomain")
    rcpt = box["mail"]["mailboxes"][0]["address"]
    subject = f"spoof-{uuid.uuid4().hex[:8]}"
    try:
        send(rcpt, subject, sender=rcpt)
    except smtplib.SMTPException:
        return  # refused outright: nothing signed either
    raw = fetch_by_subject(rcpt, register.accounts[rcpt]["password"], subject)
    assert len(raw) == 1
    assert email.message_from_bytes(raw[0])["DKIM-Signature"] is None
