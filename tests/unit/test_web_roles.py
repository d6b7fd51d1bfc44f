"""Web hosting pieces that need no root: the nginx role's filters and module, the
hosting module's helpers, PHP in the request and the model, the report's usage notes."""

from __future__ import annotations

import importlib.util
import json
import os
import pwd
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from sop import apply, model
from sop.validate import validate_paths

REPO = Path(__file__).resolve().parents[2]
ZONE = "sumbabaratdayakab.go.id"


def load(path: str):
    spec = importlib.util.spec_from_file_location(Path(path).stem, REPO / path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


nginx_filters = load("roles/nginx/filter_plugins/nginx_sites.py")
accounts_module = load("roles/sftp_hosting/library/sftp_hosting_accounts.py")
PAGE = (REPO / "roles/nginx/templates/srv/index.html.j2").read_text()


def vhost(name, title="Dinas Kesehatan", **extra):
    return {"name": name, "server_names": [f"{name}.{ZONE}", f"www.{name}.{ZONE}"],
            "root": f"/srv/www/{name}/public", "owner": f"w-{name}", "title": title,
            "abbreviation": name.upper(), **extra}


# --- nginx role: filters ------------------------------------------------------------

def test_placeholder_page_names_agency_and_regency_escaped():
    (site,) = nginx_filters.nginx_site_files(
        [vhost("dinkes", title="Dinas Kesehatan & <Sosial>")], PAGE,
        "Pemerintah Kabupaten Sumba Barat Daya")
    assert site["root"] == "/srv/www/dinkes/public" and site["owner"] == "w-dinkes"
    assert "Dinas Kesehatan &amp; &lt;Sosial&gt; (DINKES)" in site["page"]
    assert "<Sosial>" not in site["page"]
    assert "Pemerintah Kabupaten Sumba Barat Daya" in site["page"]
    assert 'lang="id"' in site["page"] and "sedang dalam persiapan" in site["page"]
    assert site["tls_cert"] == "" and site["tls_key"] == ""


def test_site_certificate_paths_take_the_site_name():
    (site,) = nginx_filters.nginx_site_files(
        [vhost("pasola")], PAGE, "X", "/etc/letsencrypt/live/sop-{name}/fullchain.pem",
        "/etc/letsencrypt/live/sop-{name}/privkey.pem")
    assert site["tls_cert"] == "/etc/letsencrypt/live/sop-pasola/fullchain.pem"
    assert site["tls_key"] == "/etc/letsencrypt/live/sop-pasola/privkey.pem"


def test_acme_lineages_wildcard_and_one_per_site():
    out = nginx_filters.nginx_acme_lineages([vhost("dinkes"), vhost("pasola")], "sop-wildcard",
                                            [ZONE, f"*.{ZONE}"], True, "sop-")
    # The wildcard needs DNS-01; a site's own names answer HTTP-01 on port 80.
    assert out == [
        {"name": "sop-wildcard", "domains": [ZONE, f"*.{ZONE}"], "challenge": "dns-01",
         "reload": ["nginx"]},
        {"name": "sop-dinkes", "domains": [f"dinkes.{ZONE}", f"www.dinkes.{ZONE}"],
         "challenge": "http-01", "reload": ["nginx"]},
        {"name": "sop-pasola", "domains": [f"pasola.{ZONE}", f"www.pasola.{ZONE}"],
         "challenge": "http-01", "reload": ["nginx"]},
    ]
    assert nginx_filters.nginx_acme_lineages([vhost("a1")], "w", [], False, "sop-") == []
    with pytest.raises(Exception, match="lineage"):
        nginx_filters.nginx_acme_lineages([vhost("wildcard")], "sop-wildcard", [ZONE], True,
                                          "sop-")


# --- nginx role: the module, run as Ansible runs it -------------------------------------

def run_module(path: str, args: dict, tmp_path: Path, check: bool = False) -> dict:
    args = {**args, "_ansible_check_mode": check}
    argfile = tmp_path / "args.json"
    argfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    result = subprocess.run([sys.executable, str(REPO / path), str(argfile)],
                            capture_output=True, text=True, check=False)
    return json.loads(result.stdout)


def test_nginx_sites_writes_pages_only_where_a_site_has_no_index(tmp_path):
    me = pwd.getpwuid(os.getuid()).pw_name
    roots = {name: tmp_path / "www" / name / "public" for name in ("baru", "ada", "php")}
    roots["ada"].mkdir(parents=True)
    (roots["ada"] / "index.html").write_text("milik instansi")
    roots["php"].mkdir(parents=True)
    (roots["php"] / "index.php").write_text("<?php")
    sites = [{"name": n, "root": str(r), "owner": me, "page": f"halaman {n}"}
             for n, r in roots.items()]
    args = {"sites": sites, "index_names": ["index.html", "index.htm", "index.php"]}

    planned = run_module("roles/nginx/library/nginx_sites.py", args, tmp_path, check=True)
    assert planned["changed"] and planned["pages_created"] == [str(roots["baru"] / "index.html")]
    assert not roots["baru"].exists(), "check mode changes nothing"

    done = run_module("roles/nginx/library/nginx_sites.py", args, tmp_path)
    assert done["changed"] and done["roots_created"] == [str(roots["baru"])]
    assert (roots["baru"] / "index.html").read_text() == "halaman baru"
    assert (roots["baru"] / "index.html").stat().st_mode & 0o777 == 0o644
    assert (roots["ada"] / "index.html").read_text() == "milik instansi"
    assert not (roots["php"] / "index.html").exists()
    assert not list(roots["baru"].glob(".sop-*")), "no temporary file left behind"

    again = run_module("roles/nginx/library/nginx_sites.py", args, tmp_path)
    assert not again["changed"]


def test_nginx_sites_reports_which_certificates_exist(tmp_path):
    me = pwd.getpwuid(os.getuid()).pw_name
    (tmp_path / "a.crt").write_text("x")
    (tmp_path / "a.key").write_text("x")
    root = tmp_path / "r"
    root.mkdir()
    (root / "index.html").write_text("x")
    sites = [{"name": "a", "root": str(root), "owner": me, "page": "",
              "tls_cert": str(tmp_path / "a.crt"), "tls_key": str(tmp_path / "a.key")},
             {"name": "b", "root": str(root), "owner": me, "page": "",
              "tls_cert": str(tmp_path / "b.crt"), "tls_key": str(tmp_path / "b.key")}]
    out = run_module("roles/nginx/library/nginx_sites.py",
                     {"sites": sites, "default_tls_cert": str(tmp_path / "a.crt"),
                      "default_tls_key": str(tmp_path / "missing.key")}, tmp_path)
    assert out["tls"] == {"a": True, "b": False} and out["default_tls"] is False


# --- hosting module helpers ---------------------------------------------------------------

def test_usage_counts_allocated_blocks_and_hard_links_once(tmp_path):
    empty = accounts_module.used_bytes(str(tmp_path))
    data = tmp_path / "public" / "data.bin"
    data.parent.mkdir()
    with open(data, "wb") as fh:
        os.posix_fallocate(fh.fileno(), 0, 1 << 20)
    os.link(data, tmp_path / "public" / "link.bin")
    (tmp_path / "public" / "sparse.bin").open("wb").truncate(50 << 20)  # no blocks
    used = accounts_module.used_bytes(str(tmp_path))
    assert (1 << 20) <= used - empty < (1 << 20) + 64 * 1024


def test_mount_of_takes_the_deepest_mount_and_its_quota_options():
    mounts = [("/srv/www", {"rw", "usrquota"}), ("/srv", {"rw"}), ("/", {"rw"})]
    assert accounts_module.mount_of("/srv/www/dinkes", mounts) == ("/srv/www", {"rw", "usrquota"})
    assert accounts_module.mount_of("/srv/wwwx", mounts)[0] == "/srv"
    assert accounts_module.mount_of("/var/x", mounts)[0] == "/"


def test_mount_points_read_from_the_mount_table(tmp_path):
    table = tmp_path / "mounts"
    table.write_text("/dev/vda / ext4 rw,relatime 0 0\n"
                     "/dev/vdb /srv/www ext4 rw,usrjquota=aquota.user,jqfmt=vfsv1 0 0\n")
    mounts = accounts_module.mount_points(str(table))
    assert mounts[0][0] == "/srv/www" and "usrjquota" in mounts[0][1]


def test_repquota_csv_gives_the_block_limits():
    text = ("User,BlockStatus,FileStatus,BlockUsed,BlockSoftLimit,BlockHardLimit,BlockGrace,"
            "FileUsed,FileSoftLimit,FileHardLimit,FileGrace\n"
            "root,ok,ok,20,0,0,,2,0,0,\n"
            "w-dinkes,ok,ok,1204,524288,524288,,12,0,0,\n")
    assert accounts_module.parse_repquota_csv(text) == {"root": (0, 0),
                                                        "w-dinkes": (524288, 524288)}
    assert accounts_module.parse_repquota_csv("no quotas here") == {}


def test_read_shadow(tmp_path):
    shadow = tmp_path / "shadow"
    shadow.write_text("root:*:19000:0:99999:7:::\nw-dinkes:$6$abc$def:19000::::::\n")
    assert accounts_module.read_shadow(str(shadow)) == {"root": "*", "w-dinkes": "$6$abc$def"}


# --- PHP: request, model ------------------------------------------------------------------

def write_request(folder: Path, label: str, hosting: str) -> None:
    (folder / f"{label}.yml").write_text(f"""\
letter: {{number: "1/2/X/2026", date: 2026-01-05, subject: Permohonan}}
agency: {{name: Dinas Uji, abbreviation: UJI, category: instansi}}
contact: {{name: Ana, nip: "198501012010012001", position: Staf, phone: "0812-3456-7890"}}
subdomain: {label}
hosting: {hosting}
""")


def test_php_is_an_optional_boolean_of_hosting(tmp_path):
    write_request(tmp_path, "satu", "{quota: 1G, php: true}")
    write_request(tmp_path, "dua", "{quota: 1G}")
    reqs, problems = validate_paths([tmp_path])
    assert not problems
    by = {r["subdomain"]: r for r in reqs}
    assert by["satu"]["hosting"]["php"] is True and "php" not in by["dua"]["hosting"]
    write_request(tmp_path, "tiga", '{quota: 1G, php: "ya"}')
    _, problems = validate_paths([tmp_path])
    assert [(p.field, p.message) for p in problems] == [
        ("hosting.php", "must be true or false (without quotes)")]


def test_php_sites_and_pools_follow_the_request_then_the_inventory():
    def req(label, php=None):
        hosting = {"quota": "1G", "quota_bytes": 1 << 30}
        if php is not None:
            hosting["php"] = php
        return {"subdomain": label, "fqdn": f"{label}.{ZONE}", "hosting": hosting,
                "agency": {"name": label, "abbreviation": label.upper()}}

    reqs = [req("ya", True), req("tidak", False), req("diam")]
    settings = {"web_root": "/srv/www"}
    assert [s["php"] for s in model.vhosts(reqs, settings)] == [True, False, False]
    pools = model.php_pools(reqs, settings)
    assert pools == [{"name": "ya", "user": "w-ya", "root": "/srv/www/ya/public",
                      "socket": "/run/php/sop-ya.sock"}]
    assert model.vhosts(reqs, settings)[0]["php_socket"] == pools[0]["socket"]
    on = {**settings, "php_default": True}
    assert [p["name"] for p in model.php_pools(reqs, on)] == ["ya", "diam"]


def test_a_database_is_an_account_a_php_site_and_a_locked_user_when_suspended():
    def req(label, database=None, php=None, status=None):
        hosting = {"quota": "1G", "quota_bytes": 1 << 30}
        for key, value in (("database", database), ("php", php)):
            if value is not None:
                hosting[key] = value
        return {"subdomain": label, "fqdn": f"{label}.{ZONE}", "hosting": hosting,
                "agency": {"name": label, "abbreviation": label.upper()},
                **({"status": status} if status else {})}

    reqs = [req("wp-satu", database=True), req("dua", database=False),
            req("tiga", database=True, status="suspended"), req("empat")]
    accounts = [a for a in model.accounts(reqs) if a["kind"] == "database"]
    assert [(a["id"], a["username"]) for a in accounts] == [
        ("database:wp-satu", "w_wp_satu"), ("database:tiga", "w_tiga")]
    assert [s["php"] for s in model.vhosts(reqs, {"web_root": "/srv/www"})] == [
        True, False, True, False]
    hashes = {"database:wp-satu": "*AA", "database:tiga": "*BB"}
    assert model.databases(reqs, hashes) == [
        {"name": "w_tiga", "user": "w_tiga", "hash": "*BB", "locked": True},
        {"name": "w_wp_satu", "user": "w_wp_satu", "hash": "*AA", "locked": False}]
    long = "x" * 63
    assert model.database_name(long) == model.hosting_username(long).replace("-", "_")
    assert len(model.database_name(long)) <= 32


# --- the run report ------------------------------------------------------------------------

def test_accounts_over_quota_become_report_notes_in_bahasa_indonesia():
    usage = [{"name": "w-pasola", "used_bytes": 300 << 20, "quota_bytes": 256 << 20,
              "over": True},
             {"name": "w-dinkes", "used_bytes": 1 << 20, "quota_bytes": 512 << 20,
              "over": False}]
    events = [{"event": "runner_on_ok",
               "event_data": {"host": "lab", "res": {"ansible_facts": {
                   "sftp_hosting_usage": usage}}}},
              {"event": "runner_on_ok", "event_data": {"host": "lab", "res": {}}}]
    notes = apply._usage_notes(SimpleNamespace(events=events))
    assert len(notes) == 1
    assert "w-pasola" in notes[0] and "melebihi kuota" in notes[0]
    assert "300,0 MiB" in notes[0] and "256,0 MiB" in notes[0]


# --- post-check: a site sending HTTP visitors to HTTPS is up --------------------------------

@pytest.mark.parametrize(("status", "location", "ok"), [
    (200, None, True),
    (301, f"https://dinkes.{ZONE}/", True),
    (301, "https://elsewhere.example/", False),
    (404, None, False),
])
def test_http_post_check_accepts_the_redirect_to_its_own_https(status, location, ok):
    import http.server
    import threading

    from sop import postcheck

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(status)
            if location:
                self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        req = {"subdomain": "dinkes", "fqdn": f"dinkes.{ZONE}"}
        result = postcheck.check_http(req, {"web_address": "127.0.0.1",
                                            "web_port": server.server_address[1]})
    finally:
        server.shutdown()
        server.server_close()
    assert result["ok"] is ok and result["detail"].startswith(f"HTTP {status}")
