"""Web hosting as an agency sees it: its site over HTTP and HTTPS, its SFTP account.

Every site answers for both its names with its own page over HTTP and over
HTTPS (certificate checked against the lab CA); unknown names get nothing of
any agency; the hosting account logs in over SFTP with the registered
password, lands in its site folder inside the chroot, can upload what nginx
then serves, and can do nothing else; PHP runs as the site's account; the
agency's own page is never replaced; usage beyond the quota is flagged; and
the switch to HTTPS-only redirects.
"""

from __future__ import annotations

import base64
import http.client
import os
import socket
import ssl
import subprocess
import time
import uuid
from pathlib import Path

import paramiko
import pytest

from .conftest import VENV_BIN, run

ZONE = "sumbabaratdayakab.go.id"
WEB = "127.0.0.1"
LAB_CA = Path("/etc/nginx/sop-lab-ca/ca.crt")
LIVE_CONF = "/etc/nginx/conf.d/agencies.conf"
CHECKER = "/usr/local/sbin/sop-nginx-check"


# --- helpers -----------------------------------------------------------------

class _LabHTTPS(http.client.HTTPSConnection):
    """HTTPS to the lab's address, with SNI and certificate check for the site's name."""

    def connect(self):
        sock = socket.create_connection((WEB, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def get(host: str, path: str = "/", tls: bool = False,
        check_name: bool = True) -> tuple[int, dict, str]:
    if tls:
        ctx = ssl.create_default_context(cafile=str(LAB_CA))
        ctx.check_hostname = check_name  # the lab CA is always checked
        conn: http.client.HTTPConnection = _LabHTTPS(host, 443, context=ctx, timeout=5)
    else:
        conn = http.client.HTTPConnection(WEB, 80, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        body = resp.read().decode("utf-8", "replace")
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


def sites(requests) -> list[dict]:
    out = [r for r in requests if r["hosting"]]
    assert out, "the lab examples must include hosting"
    return out


def host_keys() -> paramiko.HostKeys:
    """The lab sshd's own public keys: the client trusts exactly these."""
    keys = paramiko.HostKeys()
    for pub in Path("/etc/ssh").glob("ssh_host_*_key.pub"):
        kind, b64 = pub.read_text().split()[:2]
        keys.add(WEB, kind, paramiko.PKey.from_type_string(kind, base64.b64decode(b64)))
    return keys


def ssh(user: str, password: str, wait: float = 15.0) -> paramiko.SSHClient:
    """Log in; sshd refuses connections for about a second after a reload: retry."""
    deadline = time.monotonic() + wait
    while True:
        client = paramiko.SSHClient()
        for host, entries in host_keys().items():
            for kind, key in entries.items():
                client.get_host_keys().add(host, kind, key)
        try:
            client.connect(WEB, 22, username=user, password=password, look_for_keys=False,
                           allow_agent=False, timeout=5, banner_timeout=5, auth_timeout=5)
            return client
        except paramiko.AuthenticationException:
            client.close()
            raise
        except (OSError, paramiko.SSHException):
            client.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def account(req, register) -> tuple[str, str]:
    from sop.model import hosting_account_id, hosting_username

    entry = register.accounts[hosting_account_id(req["subdomain"])]
    return hosting_username(req["subdomain"]), entry["password"]


def upload(req, register, name: str, content: str) -> None:
    client = ssh(*account(req, register))
    try:
        with client.open_sftp() as sftp, sftp.open(f"/public/{name}", "w") as fh:
            fh.write(content)
    finally:
        client.close()


def remove(req, register, name: str) -> None:
    client = ssh(*account(req, register))
    try:
        with client.open_sftp() as sftp:
            sftp.remove(f"/public/{name}")
    finally:
        client.close()


# --- the sites -------------------------------------------------------------------

def test_every_site_answers_over_http_and_https_with_its_page(requests):
    for req in sites(requests):
        for host in (req["fqdn"], f"www.{req['fqdn']}"):
            for tls in (False, True):
                status, _, body = get(host, tls=tls)
                assert status == 200, (host, tls)
                assert req["agency"]["name"] in body, (host, tls)
                assert "Kabupaten Sumba Barat Daya" in body, "the page names the regency"
                others = [r["agency"]["name"] for r in requests if r is not req]
                assert not any(name in body for name in others), (host, tls)


def test_the_lab_certificate_is_refused_without_the_lab_ca(requests):
    req = sites(requests)[0]
    conn = _LabHTTPS(req["fqdn"], 443, context=ssl.create_default_context(), timeout=5)
    with pytest.raises(ssl.SSLCertVerificationError):
        conn.request("GET", "/")
    conn.close()


def test_sites_send_security_headers_and_no_version(requests):
    for req in sites(requests):
        for tls in (False, True):
            _, headers, _ = get(req["fqdn"], tls=tls)
            assert headers["server"] == "nginx", "server_tokens off: no version"
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["x-frame-options"] == "SAMEORIGIN"
            assert headers["referrer-policy"] == "strict-origin-when-cross-origin"
            assert "frame-ancestors" in headers["content-security-policy"]
            assert "strict-transport-security" not in headers, "HSTS only once HTTPS is enforced"


def test_hidden_files_are_never_served(requests, register):
    req = sites(requests)[0]
    upload(req, register, ".htpasswd", "rahasia\n")
    try:
        for tls in (False, True):
            status, _, body = get(req["fqdn"], "/.htpasswd", tls=tls)
            assert status == 403 and "rahasia" not in body
    finally:
        remove(req, register, ".htpasswd")


def test_an_unknown_name_gets_nothing_of_any_agency(requests):
    mail_only = [r["fqdn"] for r in requests if not r["hosting"]]
    assert mail_only, "the lab examples must include a mail-only request"
    for host in (f"tidakada.{ZONE}", *mail_only, "example.org"):
        for tls in (False, True):
            # example.org is not on the lab certificate: look at what is served anyway.
            status, _, body = get(host, tls=tls, check_name=host.endswith(ZONE))
            assert status == 404, (host, tls)
            for req in requests:
                assert req["agency"]["name"] not in body, (host, tls)


def test_each_site_has_its_own_logs(requests):
    for req in sites(requests):
        marker = f"/uji-log-{uuid.uuid4().hex[:10]}"
        get(req["fqdn"], marker)
        log = Path(f"/var/log/nginx/{req['subdomain']}.access.log")
        deadline = time.monotonic() + 5
        while marker not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert marker in log.read_text()
        for other in sites(requests):
            if other is not req:
                path = Path(f"/var/log/nginx/{other['subdomain']}.access.log")
                assert marker not in path.read_text()


# --- the hosting accounts ----------------------------------------------------------

def test_sftp_login_lands_in_the_site_folder_inside_the_chroot(requests, register):
    for req in sites(requests):
        client = ssh(*account(req, register))
        try:
            with client.open_sftp() as sftp:
                assert sftp.normalize(".") == "/public"
                assert sftp.listdir("/") == ["public"], "the chroot holds the site folder only"
                assert sftp.listdir("/..") == ["public"], "there is no way above the chroot"
                with pytest.raises(FileNotFoundError):
                    sftp.stat("/etc/passwd")
                with pytest.raises(PermissionError):
                    sftp.open("/uji.txt", "w").close()
                with pytest.raises(PermissionError):
                    sftp.mkdir("/uji")
        finally:
            client.close()
        home = Path("/srv/www") / req["subdomain"]
        st = home.stat()
        assert (st.st_uid, st.st_mode & 0o022) == (0, 0), "sshd chroots only into root's folders"


def test_an_upload_is_served_by_nginx(requests, register):
    for req in sites(requests):
        name = f"uji-{uuid.uuid4().hex[:10]}.html"
        content = f"<p>Unggahan uji {req['agency']['abbreviation']}</p>\n"
        upload(req, register, name, content)
        try:
            for tls in (False, True):
                status, _, body = get(f"www.{req['fqdn']}", f"/{name}", tls=tls)
                assert (status, body) == (200, content)
            user, _ = account(req, register)
            path = Path("/srv/www") / req["subdomain"] / "public" / name
            assert path.owner() == user and path.stat().st_mode & 0o777 == 0o644
        finally:
            remove(req, register, name)


def test_the_hosting_account_gets_no_shell(requests, register):
    import pwd

    req = sites(requests)[0]
    user, password = account(req, register)
    assert pwd.getpwnam(user).pw_shell == "/usr/sbin/nologin"
    client = ssh(user, password)
    try:
        channel = client.get_transport().open_session()
        channel.settimeout(5)
        channel.exec_command("id; cat /etc/passwd")
        out = b""
        while chunk := channel.recv(4096):
            out += chunk
        assert channel.recv_exit_status() != 0
        assert b"uid=" not in out and b"root:" not in out
        channel = client.get_transport().open_session()
        with pytest.raises(paramiko.SSHException):
            channel.get_pty()
    finally:
        client.close()


def test_a_wrong_password_is_refused(requests, register):
    user, password = account(sites(requests)[0], register)
    with pytest.raises(paramiko.AuthenticationException):
        ssh(user, password + "x").close()
    with pytest.raises(paramiko.AuthenticationException):
        ssh(user, "salah-salah-salah").close()


# --- PHP -------------------------------------------------------------------------------

WHOAMI = "<?php\necho posix_getpwuid(posix_geteuid())['name'], ':',\n" \
         "     var_export(function_exists('system'), true), \"\\n\";\n"


def test_php_runs_as_the_site_account_only_where_asked(requests, register):
    php_sites = [r for r in sites(requests) if r["hosting"].get("php")]
    static = [r for r in sites(requests) if not r["hosting"].get("php")]
    assert php_sites and static, "the lab examples must include a PHP site and a static one"
    for req in php_sites + static:
        upload(req, register, "siapa.php", WHOAMI)
        try:
            for tls in (False, True):
                status, _, body = get(req["fqdn"], "/siapa.php", tls=tls)
                assert status == 200
                if req in php_sites:
                    user, _ = account(req, register)
                    # Runs as the site's account; no function can start a program.
                    assert body == f"{user}:false\n"
                else:
                    assert "<?php" in body, "a static site never runs PHP"
        finally:
            remove(req, register, "siapa.php")


# --- check mode --------------------------------------------------------------------------

def test_a_check_run_for_a_new_site_changes_nothing(lab_apply, tmp_path):
    import pwd

    folder = tmp_path / "requests"
    folder.mkdir()
    for src in (Path(__file__).resolve().parents[2] / "lab" / "requests").glob("*.yml"):
        (folder / src.name).write_text(src.read_text())
    text = (folder / "pasola.yml").read_text().replace("subdomain: pasola", "subdomain: ujicek")
    (folder / "ujicek.yml").write_text(text.replace("PASOLA", "UJICEK"))
    before = Path(LIVE_CONF).read_bytes()
    result = run([str(VENV_BIN / "ansible-playbook"), "playbooks/site.yml", "--check",
                  "-e", f"sop_requests_dir={folder}"])
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Create and update the hosting group, every hosting account" in result.stdout
    with pytest.raises(KeyError):
        pwd.getpwnam("w-ujicek")
    assert not Path("/srv/www/ujicek").exists()
    assert Path(LIVE_CONF).read_bytes() == before
    status, _, _ = get(f"ujicek.{ZONE}")
    assert status == 404


# --- validate before live ---------------------------------------------------------------

def test_the_checker_refuses_a_bad_candidate_and_leaves_the_live_file(tmp_path):
    live = Path(LIVE_CONF).read_bytes()
    good = tmp_path / "good.conf"
    good.write_bytes(live)
    assert subprocess.run([CHECKER, LIVE_CONF, str(good)], capture_output=True).returncode == 0
    broken = {
        "syntax": live + b"\nserver { listen 127.0.0.1:80\n",
        "second default server": live + b"\nserver { listen 127.0.0.1:80 default_server; }\n",
        "missing key": live.replace(b"ssl_certificate_key ", b"ssl_certificate_key /nope", 1),
    }
    for why, text in broken.items():
        bad = tmp_path / "bad.conf"
        bad.write_bytes(text)
        result = subprocess.run([CHECKER, LIVE_CONF, str(bad)], capture_output=True, text=True)
        assert result.returncode != 0, why
        assert "test failed" in result.stderr or "emerg" in result.stderr, why
    assert Path(LIVE_CONF).read_bytes() == live
    assert subprocess.run(["nginx", "-t", "-q"], capture_output=True).returncode == 0


# --- a run with HTTPS enforced, an agency page and an account over its quota -----------

def _pasola(requests):
    req = next((r for r in requests if r["subdomain"] == "pasola"), None)
    assert req and req["hosting"], "the lab's web-only example"
    return req


@pytest.fixture(scope="module")
def enforced_run(requests, register, settings, tmp_path_factory):
    """The playbook (through ansible-runner, as `sop apply` runs it) with
    nginx_https_redirect on, after the agency uploaded its own index.html and
    filled its folder beyond its quota; the lab is restored afterwards."""
    from sop import apply

    req = _pasola(requests)
    user, _ = account(req, register)
    own_page = f"<h1>Halaman sendiri {uuid.uuid4().hex[:8]}</h1>\n"
    upload(req, register, "index.html", own_page)
    big = Path("/srv/www/pasola/public/arsip-besar.bin")
    with open(big, "wb") as fh:
        os.posix_fallocate(fh.fileno(), 0, req["hosting"]["quota_bytes"] + (44 << 20))
    os.chown(big, Path("/srv/www/pasola/public").stat().st_uid, -1)
    try:
        progress = apply.Progress(out=lambda line: None)
        result = apply.run_playbook(settings, tmp_path_factory.mktemp("runner"), progress,
                                    {"nginx_https_redirect": True})
        assert result.rc == 0, progress.failures
        yield {"result": result, "own_page": own_page, "user": user}
    finally:
        big.unlink(missing_ok=True)
        remove(req, register, "index.html")
        restore = run([str(VENV_BIN / "ansible-playbook"), "playbooks/site.yml"])
        assert restore.returncode == 0, restore.stdout[-3000:]
        status, _, body = get(req["fqdn"])
        assert status == 200 and req["agency"]["name"] in body, "placeholder back, HTTP serves"


def _usage(result) -> list[dict]:
    found = []
    for event in result.events:
        facts = ((event.get("event_data") or {}).get("res") or {}).get("ansible_facts") or {}
        if "sftp_hosting_usage" in facts:
            found = facts["sftp_hosting_usage"]
    return found


def test_http_redirects_to_https_once_switched_on(enforced_run, requests):
    for req in sites(requests):
        for host in (req["fqdn"], f"www.{req['fqdn']}"):
            status, headers, body = get(host, "/halaman?x=1")
            assert status == 301 and headers["location"] == f"https://{host}/halaman?x=1"
            assert req["agency"]["name"] not in body
            status, headers, _ = get(host, tls=True)
            assert status == 200
            assert headers["strict-transport-security"] == "max-age=31536000"
    status, _, _ = get(f"tidakada.{ZONE}")
    assert status == 404, "unknown names are not redirected"


def test_an_agency_page_is_never_replaced_by_the_placeholder(enforced_run, requests):
    req = _pasola(requests)
    status, _, body = get(req["fqdn"], tls=True)
    assert (status, body) == (200, enforced_run["own_page"])


def test_an_account_over_its_quota_is_flagged_for_the_report(enforced_run, requests):
    from sop import apply

    usage = _usage(enforced_run["result"])
    assert usage, "the run reports the usage of every account"
    by_name = {entry["name"]: entry for entry in usage}
    req = _pasola(requests)
    pasola = by_name[enforced_run["user"]]
    assert pasola["over"] and pasola["used_bytes"] > req["hosting"]["quota_bytes"]
    assert pasola["quota_bytes"] == req["hosting"]["quota_bytes"]
    assert not pasola["enforced"], "the lab kernel has no quotas: measured, not enforced"
    others = [e for n, e in by_name.items() if n != enforced_run["user"]]
    assert others and not any(e["over"] for e in others)
    notes = apply._usage_notes(enforced_run["result"])
    assert len(notes) == 1 and enforced_run["user"] in notes[0] and "melebihi kuota" in notes[0]
