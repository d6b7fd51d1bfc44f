"""Issue 20: a MariaDB database per site, and a real CMS on it.

The lab examples ask for one database (bappeda, a PHP site); pasola is the
neighbour, a PHP site of another agency. WordPress comes from Debian's
`wordpress` package, copied into bappeda's site as an agency would upload it,
installed through its own web installer and reached over HTTPS.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import textwrap
import urllib.parse
from pathlib import Path

import pytest

from sop.model import database_account_id, database_name, hosting_username

from .conftest import REPO, VENV_BIN, run
from .test_web import LAB_CA, _LabHTTPS, account, get, remove, ssh, upload

WORDPRESS = Path("/usr/share/wordpress")
SOCKET = "/run/mysqld/mysqld.sock"


def mariadb(sql: str, *, user: str | None = None, password: str | None = None,
            database: str = "") -> subprocess.CompletedProcess:
    """The mariadb client on the local socket: as root (unix_socket), or as
    ``user`` with ``password`` from a private option file (never on a command line)."""
    argv = ["mariadb", "--batch", "--skip-column-names", f"--socket={SOCKET}"]
    with tempfile.NamedTemporaryFile("w", prefix="sop-db-", suffix=".cnf") as opt:
        if user is not None:
            os.chmod(opt.name, 0o600)
            opt.write(f"[client]\nuser={user}\npassword={password or ''}\n")
            opt.flush()
            argv.insert(1, f"--defaults-extra-file={opt.name}")
        return subprocess.run([*argv, *([database] if database else [])], input=sql,
                              capture_output=True, text=True, timeout=30, check=False)


def db_sites(requests) -> list[dict]:
    out = [r for r in requests if (r.get("hosting") or {}).get("database")]
    assert out, "the lab examples must include a site with a database"
    return out


def by_label(requests, label: str) -> dict:
    (req,) = [r for r in requests if r["subdomain"] == label]
    return req


# --- the server -----------------------------------------------------------------------


def test_mariadb_has_no_network_port(lab_apply):
    assert mariadb("SELECT @@skip_networking;").stdout.strip() == "1"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", 3306), timeout=3).close()


def test_each_site_has_its_database_and_a_user_of_its_own(requests, register):
    for req in db_sites(requests):
        name = database_name(req["subdomain"])
        entry = register.accounts[database_account_id(req["subdomain"])]
        assert entry["username"] == name
        # The name is the model's ([a-z0-9_] only).
        hosts = mariadb(f"SELECT Host FROM mysql.user WHERE User = '{name}';")  # noqa: S608
        hosts = hosts.stdout.split()
        assert hosts == ["localhost"]
        # Its password from the register (the sheet's) logs in and sees its database only.
        ok = mariadb("SHOW DATABASES;", user=name, password=entry["password"])
        assert ok.returncode == 0, ok.stderr
        assert set(ok.stdout.split()) == {"information_schema", name}
        wrong = mariadb("SELECT 1;", user=name, password="not-" + entry["password"])
        assert wrong.returncode != 0 and "Access denied" in wrong.stderr
        # No right beyond its database: no FILE, no other schema.
        refused = mariadb("SELECT LOAD_FILE('/etc/passwd');", user=name,
                          password=entry["password"], database=name)
        assert refused.stdout.strip() in ("NULL", "")


# --- WordPress ------------------------------------------------------------------------

WP_CONFIG = """\
<?php
define('DB_NAME', '{name}');
define('DB_USER', '{name}');
define('DB_PASSWORD', '{password}');
define('DB_HOST', 'localhost:{socket}');
define('DB_CHARSET', 'utf8mb4');
define('DB_COLLATE', '');
{salts}
define('WP_HOME', 'https://{fqdn}/wp');
define('WP_SITEURL', 'https://{fqdn}/wp');
define('FORCE_SSL_ADMIN', true);
// The lab reaches nothing outside 127.0.0.0/8: no updates, no cron loopback.
define('AUTOMATIC_UPDATER_DISABLED', true);
define('DISABLE_WP_CRON', true);
define('WP_HTTP_BLOCK_EXTERNAL', true);
$_SERVER['HTTPS'] = 'on';
$table_prefix = 'wp_';
if (!defined('ABSPATH')) define('ABSPATH', __DIR__ . '/');
require_once ABSPATH . 'wp-settings.php';
"""

# Every HTTP request of WordPress answered locally (names resolve through the
# machine's resolver, outside the lab); its mail not sent: the pools have no
# mail() (roles/php_fpm), a site sends through SMTP with a mailbox of its own.
NO_HTTP = """\
<?php
add_filter('pre_http_request', function () {
    return new WP_Error('sop_lab', 'no outbound HTTP in the lab');
}, 1);
add_filter('pre_wp_mail', '__return_false');
"""


def https(host: str, path: str, body: dict | None = None,
          cookies: dict | None = None) -> tuple[int, dict, str, list[str]]:
    """GET (or POST a form) over HTTPS to the lab with SNI; status, headers, body, cookies."""
    import ssl

    ctx = ssl.create_default_context(cafile=str(LAB_CA))
    conn = _LabHTTPS(host, 443, context=ctx, timeout=60)
    headers = {"Host": host}
    if cookies:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    data = None
    if body is not None:
        data = urllib.parse.urlencode(body)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    try:
        conn.request("POST" if body is not None else "GET", path, body=data, headers=headers)
        resp = conn.getresponse()
        text = resp.read().decode("utf-8", "replace")
        return (resp.status, {k.lower(): v for k, v in resp.getheaders()}, text,
                resp.headers.get_all("Set-Cookie") or [])
    finally:
        conn.close()


@pytest.fixture(scope="module")
def wordpress(requests, register, settings):
    """WordPress from Debian's package in bappeda's site, installed on its database."""
    if not (WORDPRESS / "wp-login.php").exists():
        pytest.fail("Debian's wordpress package is not installed (scripts/bootstrap)")
    req = by_label(requests, "bappeda")
    label, fqdn = req["subdomain"], req["fqdn"]
    entry = register.accounts[database_account_id(label)]
    public = Path(settings.get("sop_web_storage_path")) / label / "public"
    dest = public / "wp"
    owner = hosting_username(label)
    shutil.rmtree(dest, ignore_errors=True)
    # As an agency would upload it: the files themselves (Debian's symbolic
    # links to /etc/wordpress resolved), its own wp-config.php, the account's.
    shutil.copytree(WORDPRESS, dest, symlinks=False,
                    ignore=shutil.ignore_patterns("wp-config.php", ".htaccess"))
    salts = "\n".join(f"define('{k}', '{secrets.token_hex(32)}');" for k in (
        "AUTH_KEY", "SECURE_AUTH_KEY", "LOGGED_IN_KEY", "NONCE_KEY", "AUTH_SALT",
        "SECURE_AUTH_SALT", "LOGGED_IN_SALT", "NONCE_SALT"))
    (dest / "wp-config.php").write_text(WP_CONFIG.format(
        name=entry["username"], password=entry["password"], socket=SOCKET, salts=salts,
        fqdn=fqdn))
    (dest / "wp-content" / "mu-plugins").mkdir(exist_ok=True)
    (dest / "wp-content" / "mu-plugins" / "sop-lab-no-http.php").write_text(NO_HTTP)
    subprocess.run(["chown", "-R", f"{owner}:", str(dest)], check=True)
    os.chmod(dest / "wp-config.php", 0o644)  # what an SFTP upload leaves (umask 022)
    admin_password = secrets.token_urlsafe(12)
    status, _, body, _ = https(fqdn, "/wp/wp-admin/install.php?step=2", {
        "weblog_title": "Bappeda Sumba Barat Daya", "user_name": "pengelola",
        "admin_password": admin_password, "admin_password2": admin_password,
        "pw_weak": "1", "admin_email": f"admin@{fqdn}", "blog_public": "0",
        "language": ""})
    assert status == 200, body[-2000:]
    assert "wp-login.php" in body, body[-2000:]  # "Success!" and a link to log in
    yield {"req": req, "fqdn": fqdn, "dest": dest, "entry": entry, "admin": admin_password}
    shutil.rmtree(dest, ignore_errors=True)
    tables = mariadb("SHOW TABLES;", database=entry["username"]).stdout.split()
    if tables:
        mariadb("".join(f"DROP TABLE `{t}`;" for t in tables), database=entry["username"])


def test_wordpress_keeps_its_site_in_the_sites_database(wordpress):
    name = wordpress["entry"]["username"]
    out = mariadb("SELECT option_value FROM wp_options WHERE option_name = 'blogname';",
                  database=name)
    assert out.stdout.strip() == "Bappeda Sumba Barat Daya"


def test_wordpress_front_page_and_login_answer_over_https(wordpress):
    fqdn = wordpress["fqdn"]
    status, _, body, _ = https(fqdn, "/wp/")
    assert status == 200
    assert "<title>" in body and "Bappeda Sumba Barat Daya" in body
    status, _, body, _ = https(fqdn, "/wp/wp-login.php")
    assert status == 200 and 'name="log"' in body and 'name="pwd"' in body
    # The administrator logs in: WordPress checked the password in the database.
    status, headers, body, cookies = https(fqdn, "/wp/wp-login.php", {
        "log": "pengelola", "pwd": wordpress["admin"], "testcookie": "1",
        "redirect_to": f"https://{fqdn}/wp/wp-admin/"},
        cookies={"wordpress_test_cookie": "WP%20Cookie%20check"})
    error = body.partition('id="login_error"')[2][:400]
    assert status == 302 and headers["location"].endswith("/wp/wp-admin/"), (status, error)
    assert any(c.startswith("wordpress_logged_in_") for c in cookies)
    status, _, _, _ = https(fqdn, "/wp/wp-login.php", {
        "log": "pengelola", "pwd": "wrong-" + wordpress["admin"], "testcookie": "1"},
        cookies={"wordpress_test_cookie": "WP%20Cookie%20check"})
    assert status == 200  # the form again, with an error: no redirect into wp-admin


def test_the_configuration_is_never_served_as_text(wordpress):
    status, _, body, _ = https(wordpress["fqdn"], "/wp/wp-config.php")
    assert wordpress["entry"]["password"] not in body and "DB_PASSWORD" not in body


# --- the neighbour ----------------------------------------------------------------------

PROBE = """\
<?php
// Run by a PHP pool: what it can reach of bappeda's WordPress and database.
mysqli_report(MYSQLI_REPORT_OFF);
$out = [];
$config = '%(config)s';
$out['read_config'] = @file_get_contents($config) !== false;
$out['stat_config'] = @file_exists($config);
$tries = json_decode(base64_decode('%(tries)s'), true);
foreach ($tries as $key => $t) {
    $db = @mysqli_connect($t[0], $t[1], $t[2], $t[3], 0, $t[4]);
    $out[$key] = $db ? 'connected' : mysqli_connect_error();
    if ($db) { mysqli_close($db); }
}
header('Content-Type: application/json');
echo json_encode($out);
"""


def probe(site: dict, register, config: Path, tries: dict) -> dict:
    import base64

    text = PROBE % {"config": str(config),
                    "tries": base64.b64encode(json.dumps(tries).encode()).decode()}
    upload(site, register, "sop-probe.php", text)
    try:
        status, _, body = get(site["fqdn"], "/sop-probe.php", tls=True)
    finally:
        remove(site, register, "sop-probe.php")
    assert status == 200, body
    return json.loads(body)


def test_another_agencys_php_cannot_read_the_config_nor_use_the_database(
        wordpress, requests, register):
    neighbour = by_label(requests, "pasola")
    assert neighbour["hosting"].get("php") and not neighbour["hosting"].get("database")
    name = wordpress["entry"]["username"]
    _, own_password = account(neighbour, register)
    tries = {
        "no_password": ["localhost", name, "", name, SOCKET],
        "own_password": ["localhost", name, own_password, name, SOCKET],
        "own_name": ["localhost", database_name("pasola"), own_password, name, SOCKET],
        "root": ["localhost", "root", "", "", SOCKET],
        "tcp": ["127.0.0.1", name, "", name, 3306],
    }
    seen = probe(neighbour, register, wordpress["dest"] / "wp-config.php", tries)
    assert seen["read_config"] is False and seen["stat_config"] is False
    for key in tries:
        assert seen[key] != "connected", (key, seen)
    assert "Access denied" in seen["no_password"] and "Access denied" in seen["own_password"]
    assert "Access denied" in seen["root"]
    # The same probe in bappeda's own pool, with the sheet's password, connects
    # and reads its configuration: what the neighbour was refused exists.
    own = probe(wordpress["req"], register, wordpress["dest"] / "wp-config.php",
                {"right": ["localhost", name, wordpress["entry"]["password"], name, SOCKET]})
    assert own == {"read_config": True, "stat_config": True, "right": "connected"}


def test_another_agencys_sftp_account_reaches_neither_config_nor_database(
        wordpress, requests, register):
    import paramiko

    neighbour = by_label(requests, "pasola")
    client = ssh(*account(neighbour, register))
    try:
        with client.open_sftp() as sftp:
            for path in (str(wordpress["dest"] / "wp-config.php"),
                         "/../bappeda/public/wp/wp-config.php", SOCKET):
                with pytest.raises(OSError):
                    sftp.stat(path)
        # No forwarding to the database, by TCP or otherwise.
        with pytest.raises(paramiko.ChannelException):
            client.get_transport().open_channel("direct-tcpip", ("127.0.0.1", 3306),
                                                ("127.0.0.1", 0), timeout=5)
    finally:
        client.close()


# --- the role on its own: suspension, archive, restore, purge ----------------------------


def module_run(tmp_path: Path, **args) -> dict:
    """The role's module on the lab's MariaDB through a one-task playbook (the
    hash comes from a vars file, not a command line)."""
    # Debian's Python, as the lab inventory says (discovery may find another).
    (tmp_path / "vars.json").write_text(json.dumps(
        {"db_args": args, "ansible_python_interpreter": "/usr/bin/python3"}))
    os.chmod(tmp_path / "vars.json", 0o600)
    (tmp_path / "play.yml").write_text(textwrap.dedent("""\
        - hosts: localhost
          connection: local
          gather_facts: false
          tasks:
            - mariadb_sites: "{{ db_args }}"
              register: out
              no_log: true
            - copy: {content: "{{ out | to_json }}", dest: "@DIR@/out.json", mode: "0600"}
        """).replace("@DIR@", str(tmp_path)))
    result = run([str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-e",
                  f"@{tmp_path / 'vars.json'}", str(tmp_path / "play.yml")],
                 env={"ANSIBLE_LIBRARY": str(REPO / "roles/mariadb/library")})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return json.loads((tmp_path / "out.json").read_text())


def test_suspend_archive_restore_and_purge_a_database(tmp_path):
    from sop.register import mariadb_hash

    name, password = "sop_test_life", secrets.token_urlsafe(12)
    mariadb(f"DROP DATABASE IF EXISTS {name}; DROP USER IF EXISTS '{name}'@'localhost';")
    dump = tmp_path / "archive" / f"{name}-2027-01-01.sql"
    wanted = {"name": name, "user": name, "hash": mariadb_hash(password), "locked": False}
    item = {"name": name, "user": name, "archive": str(dump)}
    try:
        assert module_run(tmp_path, databases=[wanted])["created"] == [name]
        assert module_run(tmp_path, databases=[wanted])["changed"] is False
        assert mariadb("CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('data');", user=name,
                       password=password, database=name).returncode == 0
        # Suspended: the user is locked, its data stays.
        assert module_run(tmp_path, databases=[{**wanted, "locked": True}])["updated"] == [name]
        locked = mariadb("SELECT 1;", user=name, password=password)
        assert locked.returncode != 0 and "locked" in locked.stderr.lower()
        assert module_run(tmp_path, databases=[{**wanted, "locked": True}])["changed"] is False
        # Archived: dumped (root only), then the user and the database are gone.
        assert module_run(tmp_path, archive=[item])["archived"] == [name]
        assert dump.is_file() and dump.stat().st_mode & 0o077 == 0
        assert "'data'" in dump.read_text()
        assert mariadb(f"SHOW DATABASES LIKE '{name}';").stdout.strip() == ""
        assert mariadb("SELECT 1;", user=name, password=password).returncode != 0
        assert module_run(tmp_path, archive=[item])["changed"] is False
        # Restored: the data back, the same password logs in.
        out = module_run(tmp_path, databases=[wanted], restore=[item])
        assert out["restored"] == [name] and not dump.exists()
        back = mariadb("SELECT v FROM t;", user=name, password=password, database=name)
        assert back.stdout.strip() == "data", back.stderr
        assert module_run(tmp_path, databases=[wanted])["changed"] is False
        assert module_run(tmp_path, databases=[wanted])["sizes"][name] > 0
        # A reset password (sop reset-password database:<label>): the new hash replaces it.
        new_password = secrets.token_urlsafe(12)
        renewed = {**wanted, "hash": mariadb_hash(new_password)}
        assert module_run(tmp_path, databases=[renewed])["updated"] == [name]
        assert mariadb("SELECT 1;", user=name, password=password).returncode != 0
        assert mariadb("SELECT 1;", user=name, password=new_password).returncode == 0
        # Archived again, then purged: the dump goes.
        module_run(tmp_path, archive=[item])
        assert module_run(tmp_path, purge=[item])["purged"] == [name]
        assert not dump.exists()
    finally:
        mariadb(f"DROP DATABASE IF EXISTS {name}; DROP USER IF EXISTS '{name}'@'localhost';")
