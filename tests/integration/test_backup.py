"""Backups (issue 19): borg to the lab's backup host (this machine, SSH on
loopback, the role `backup`), `sop backup run|status`, `sop restore`, and
the hostile cases: deletions from a source host's key, a wrong passphrase,
a full backup disk.

The lab has no systemd as PID 1: the timers are checked with
`systemd-analyze verify` and the backups run on demand (`sop backup run`).
"""

from __future__ import annotations

import grp
import hashlib
import importlib.machinery
import importlib.util
import json
import os
import pwd
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import VENV_BIN, run
from .test_database import mariadb

CONF_FILE = Path("/etc/sop-backup/backup.json")
SCRIPT = "/usr/local/sbin/sop-backup"
PRUNE = "/usr/local/sbin/sop-backup-prune"
ZONE = "sumbabaratdayakab.go.id"
MAILBOX = f"admin@dinkes.{ZONE}"
MAILDIR = Path(f"/var/mail/vhosts/dinkes.{ZONE}/admin/Maildir")
SITE = Path("/srv/www/dinkes")
# Other agencies' data (and another mailbox of the same agency).
NEIGHBOURS = [Path(f"/var/mail/vhosts/{ZONE}/bappeda"), Path("/srv/www/bappeda"),
              Path(f"/var/mail/vhosts/dinkes.{ZONE}/kepala")]


def sop(*args: str) -> subprocess.CompletedProcess:
    return run([str(VENV_BIN / "sop"), "-i", "inventory/lab", *args])


def script_module():
    loader = importlib.machinery.SourceFileLoader("sop_backup_script", SCRIPT)
    spec = importlib.util.spec_from_loader("sop_backup_script", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def client_borg(conf: dict, *args: str, **env) -> subprocess.CompletedProcess:
    """borg as the source host runs it: its key, so append-only borg serve."""
    return subprocess.run(["borg", *args], env={**script_module().borg_env(conf), **env},
                          capture_output=True, text=True, check=False)


def tree_hash(path: Path) -> str:
    digest = hashlib.sha256()
    for item in sorted(path.rglob("*")):
        st = item.lstat()
        digest.update(f"{item}:{st.st_uid}:{st.st_gid}:{st.st_mode}".encode())
        if item.is_file():
            digest.update(item.read_bytes())
    return digest.hexdigest()


def put(path: Path, content: bytes, owner: str, group: str, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    os.chown(path, pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid)
    os.chmod(path, mode)


@pytest.fixture(scope="module")
def conf(lab_apply) -> dict:
    return json.loads(CONF_FILE.read_text())


@pytest.fixture(scope="module")
def backed_up(conf, register):
    """Test files in one mailbox, one site and the neighbours, then a backup."""
    tag = secrets.token_hex(4)
    files = {
        "mail": (MAILDIR / "cur" / f"backup-test-{tag}:2,S",
                 b"Subject: kept\n\nbody " + tag.encode(), "vmail", "vmail", 0o600),
        "site": (SITE / "public" / f"backup-test-{tag}.html", b"<p>site " + tag.encode() + b"</p>",
                 "w-dinkes", "sftponly", 0o644),
        "neighbour_mail": (NEIGHBOURS[0] / "Maildir" / "cur" / f"backup-test-{tag}:2,S",
                           b"neighbour " + tag.encode(), "vmail", "vmail", 0o600),
        "neighbour_site": (NEIGHBOURS[1] / "public" / f"backup-test-{tag}.html",
                           b"neighbour " + tag.encode(), "w-bappeda", "sftponly", 0o644),
    }
    for path, content, owner, group, mode in files.values():
        put(path, content, owner, group, mode)
    # A row in the lab site's database (bappeda asks for one).
    database = register.accounts["database:bappeda"]["username"]
    sql = f"CREATE TABLE IF NOT EXISTS backup_test (v TEXT); INSERT INTO backup_test VALUES ('row {tag}');"  # noqa: E501, S608 (a hex tag)
    assert mariadb(sql, database=database).returncode == 0
    result = sop("backup", "run")
    assert result.returncode == 0, result.stdout + result.stderr
    yield {"files": files, "run": result, "tag": tag, "database": database}
    for path, *_ in files.values():
        path.unlink(missing_ok=True)
    mariadb("DROP TABLE IF EXISTS backup_test;", database=database)


def test_units_verify(lab_apply):
    """The nightly timer and the prune job's units as systemd would load them."""
    units = [f"/etc/systemd/system/{name}" for name in
             ("sop-backup.service", "sop-backup.timer",
              "sop-backup-prune.service", "sop-backup-prune.timer")]
    done = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "OnCalendar=*-*-* 02:00:00" in Path(units[1]).read_text()


def test_passphrase_from_register_only_in_root_file(conf, register, backed_up, settings):
    secret = register.keys["backup-repository"]["secret"]
    passfile = Path(conf["passphrase_file"])
    assert passfile.read_text().strip() == secret
    assert passfile.stat().st_mode & 0o777 == 0o600 and passfile.stat().st_uid == 0
    server_file = Path("/etc/sop-backup-server/passphrase")
    assert server_file.stat().st_mode & 0o777 == 0o600
    assert server_file.stat().st_uid == pwd.getpwnam("sopbackup").pw_uid
    # Nowhere else: settings, status, the run's output and Ansible's artifacts.
    assert secret not in CONF_FILE.read_text()
    assert secret not in Path(conf["status_file"]).read_text()
    assert secret not in backed_up["run"].stdout + backed_up["run"].stderr
    for path in (settings.state_dir / "runs").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_archive_holds_what_is_covered_not_printouts(conf, backed_up, settings):
    archive = json.loads(Path(conf["status_file"]).read_text())["last_good"]["archive"]
    done = client_borg(conf, "list", "--format", "{path}{NL}", f"{conf['repository']}::{archive}")
    assert done.returncode == 0, done.stderr
    paths = set(done.stdout.splitlines())
    state = str(settings.state_dir).lstrip("/")
    for wanted in (str(backed_up["files"]["mail"][0]).lstrip("/"),
                   str(backed_up["files"]["site"][0]).lstrip("/"),
                   f"etc/opendkim/keys/dinkes.{ZONE}/mail.private",
                   f"var/lib/bind/db.{ZONE}", "etc/bind/transfer.key",
                   f"{state}/register.vault.yml"):
        assert wanted in paths, wanted
    assert any(p.startswith(f"{state}/records/") for p in paths)
    assert any(p.startswith(f"{state}/reports/") for p in paths)
    assert not any(p.startswith(f"{state}/printouts") for p in paths)
    assert (settings.state_dir / "printouts").is_dir(), "no printouts to leave out"


def test_each_database_is_dumped_consistently_into_the_archive(conf, backed_up):
    """The mariadb role's dump hook: the site database as SQL in the archive,
    with the row written just before the backup; root's alone on the host."""
    archive = json.loads(Path(conf["status_file"]).read_text())["last_good"]["archive"]
    member = f"{conf['dump_dir'].lstrip('/')}/mariadb/{backed_up['database']}.sql"
    done = client_borg(conf, "extract", "--stdout", f"{conf['repository']}::{archive}", member)
    assert done.returncode == 0, done.stderr
    assert "CREATE TABLE `backup_test`" in done.stdout
    assert f"row {backed_up['tag']}" in done.stdout
    dumps = Path(conf["dump_dir"]) / "mariadb"
    assert dumps.stat().st_mode & 0o777 == 0o700 and dumps.stat().st_uid == 0
    for dump in dumps.iterdir():
        assert dump.stat().st_mode & 0o077 == 0, dump
    assert not any(p.name in ("mysql.sql", "sys.sql") for p in dumps.iterdir())


def test_run_report_lists_each_hosts_backup(lab_apply):
    rows = lab_apply["report"]["backups"]
    assert [r["host"] for r in rows] == ["lab"]
    # Read during the apply: a good backup of an earlier run, or flagged.
    assert rows[0]["last_good"] or "no good backup" in rows[0]["problems"]


def test_status_per_host(backed_up):
    done = sop("backup", "status", "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [r["host"] for r in rows] == ["lab"]
    assert rows[0]["problems"] == [] and rows[0]["original_size"] > 0
    assert rows[0]["age_hours"] < 1


def test_restore_mailbox_and_site_only_what_was_named(backed_up):
    files = backed_up["files"]
    mail, site = files["mail"][0], files["site"][0]
    mail.unlink()
    site.unlink()
    # The neighbours change after the backup: a restore must not undo that.
    for key in ("neighbour_mail", "neighbour_site"):
        files[key][0].write_bytes(b"changed after the backup")
    before = {str(p): tree_hash(p) for p in NEIGHBOURS}

    done = sop("restore", "mailbox", MAILBOX)
    assert done.returncode == 0, done.stdout + done.stderr
    done = sop("restore", "site", "dinkes")
    assert done.returncode == 0, done.stdout + done.stderr

    for path, content, owner, group, mode in (files["mail"], files["site"]):
        assert path.read_bytes() == content
        st = path.stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (
            pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid, mode)
    assert {str(p): tree_hash(p) for p in NEIGHBOURS} == before


def test_restore_agency_at_date_only_its_own(backed_up, settings):
    files = backed_up["files"]
    for key in ("mail", "site"):
        files[key][0].unlink()
    for key in ("neighbour_mail", "neighbour_site"):
        files[key][0].write_bytes(b"changed again after the backup")
    others = NEIGHBOURS[:2]  # other agencies (kepala@ is dinkes' own)
    before = {str(p): tree_hash(p) for p in others}
    today = json.loads(Path("/var/lib/sop-backup/status.json").read_text())["last_good"]["time"]

    done = sop("restore", "agency", "dinkes", "--at", today[:10])
    assert done.returncode == 0, done.stdout + done.stderr
    for path, content, *_ in (files["mail"], files["site"]):
        assert path.read_bytes() == content
    assert {str(p): tree_hash(p) for p in others} == before
    record = json.loads(sorted((settings.path("sop_records_dir") / "restores")
                               .glob("*-agency.json"))[-1].read_text())
    assert record["name"] == "dinkes" and record["at"] == today[:10]
    assert record["hosts"]["lab"]["archive"].startswith("lab-")
    assert str(SITE) in record["paths"]["web"]


def test_restore_refuses_what_is_not_a_name_or_has_no_backup(backed_up):
    done = sop("restore", "mailbox", f"../../etc@{ZONE}")
    assert done.returncode == 2 and "not a mailbox address" in done.stderr
    done = sop("restore", "site", "dinkes", "--at", "2000-01-01")
    assert done.returncode == 4
    assert "no backup on or before 2000-01-01" in done.stderr


def test_source_key_cannot_delete_backups(conf, backed_up):
    """Append-only: the repository cannot be deleted from a source host; an
    archive it hides is seen by the prune job, which then refuses to prune
    or compact, and the documented rollback brings it back."""
    repo = Path(conf["repository"].split(":22", 1)[1])
    done = client_borg(conf, "delete", conf["repository"],
                       BORG_DELETE_I_KNOW_WHAT_I_AM_DOING="YES")
    assert done.returncode != 0 and "append-only" in done.stderr

    prune = ["runuser", "-u", "sopbackup", "--", PRUNE]
    done = subprocess.run(prune, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    kept = json.loads(client_borg(conf, "list", "--json", conf["repository"]).stdout)["archives"]
    victim = kept[-1]["name"]
    last_segment = max(int(p.name) for p in repo.glob("data/*/*") if p.name.isdigit())

    done = client_borg(conf, "delete", f"{conf['repository']}::{victim}")
    assert done.returncode == 0  # only a new manifest: the data stays
    done = subprocess.run(prune, capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert f"archives deleted from the client side: {victim}" in done.stderr

    # The rollback of the role README: segments after the deletion, the
    # indexes, and the clients' memory of the newer manifest go.
    for segment in repo.glob("data/*/*"):
        if segment.name.isdigit() and int(segment.name) > last_segment:
            segment.unlink()
    for pattern in ("index.*", "hints.*", "integrity.*"):
        for path in repo.glob(pattern):
            path.unlink()
    repo_id = next(line.split("=", 1)[1].strip() for line in (repo / "config").read_text()
                   .splitlines() if line.startswith("id ="))
    for base in (conf["state_dir"], "/var/lib/sop-backup-server"):
        shutil.rmtree(Path(base) / ".config/borg/security" / repo_id, ignore_errors=True)
        shutil.rmtree(Path(base) / ".cache/borg" / repo_id, ignore_errors=True)
    names = [a["name"] for a in
             json.loads(client_borg(conf, "list", "--json", conf["repository"]).stdout)["archives"]]
    assert victim in names
    done = subprocess.run(prune, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_wrong_passphrase_fails_clearly(conf, tmp_path, backed_up):
    wrong = tmp_path / "passphrase"
    wrong.write_text("not-the-passphrase\n")
    wrong.chmod(0o600)
    bad = {**conf, "passphrase_file": str(wrong), "status_file": str(tmp_path / "status.json")}
    (tmp_path / "backup.json").write_text(json.dumps(bad))
    done = subprocess.run([SCRIPT, "--config", str(tmp_path / "backup.json"), "run"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert "passphrase" in done.stderr and "incorrect" in done.stderr
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["last"]["ok"] is False and "incorrect" in status["last"]["message"]
    assert "last_good" not in status
    assert "not-the-passphrase" not in done.stdout + done.stderr


def test_full_backup_disk_is_a_failed_backup(conf, tmp_path, backed_up):
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)], check=True)
    try:
        env = {**script_module().borg_env(conf), "BORG_BASE_DIR": str(tmp_path / "base")}
        subprocess.run(["borg", "init", "--encryption=repokey-blake2", str(small / "repo")],
                       env=env, check=True, capture_output=True)
        data = tmp_path / "data"
        data.mkdir()
        (data / "big").write_bytes(os.urandom(6 * 1024 * 1024))  # incompressible
        full = {**conf, "repository": str(small / "repo"), "paths": [str(data)],
                "state_dir": str(tmp_path / "base"), "status_file": str(tmp_path / "status.json"),
                "dump_hooks_dir": str(tmp_path / "none"), "dump_dir": str(tmp_path / "none")}
        (tmp_path / "backup.json").write_text(json.dumps(full))
        done = subprocess.run([SCRIPT, "--config", str(tmp_path / "backup.json"), "run"],
                              capture_output=True, text=True, check=False)
        assert done.returncode == 1, done.stdout
        status = json.loads((tmp_path / "status.json").read_text())
        assert status["last"]["ok"] is False
        assert "space" in status["last"]["message"].lower(), status["last"]["message"]
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_a_failed_dump_fails_the_backup_and_keeps_the_last_good_dumps(conf, backed_up):
    """A database mariadb-dump cannot read (a view on a dropped table): the
    backup fails naming the dump and makes no archive; the dumps and the last
    good backup stay as they were; the next backup after the repair is good."""
    dumps = Path(conf["dump_dir"]) / "mariadb"
    before = {p.name: p.read_bytes() for p in dumps.iterdir()}
    assert f"{backed_up['database']}.sql" in before
    status_file = Path(conf["status_file"])
    last_good = json.loads(status_file.read_text())["last_good"]
    archives = len(json.loads(client_borg(conf, "list", "--json", conf["repository"])
                              .stdout)["archives"])
    broken = mariadb("CREATE DATABASE sop_broken_test; USE sop_broken_test; "
                     "CREATE TABLE t (v INT); CREATE VIEW v AS SELECT v FROM t; DROP TABLE t;")
    assert broken.returncode == 0, broken.stderr
    try:
        done = sop("backup", "run")
        assert done.returncode != 0, done.stdout
        status = json.loads(status_file.read_text())
        assert status["last"]["ok"] is False
        assert "dump mariadb failed" in status["last"]["message"], status["last"]
        assert status["last_good"] == last_good
        assert {p.name: p.read_bytes() for p in dumps.iterdir()} == before
        after = json.loads(client_borg(conf, "list", "--json", conf["repository"]).stdout)
        assert len(after["archives"]) == archives, "an archive was made without the dump"
        flagged = json.loads(sop("backup", "status", "--json").stdout)[0]["problems"]
        assert flagged, "status does not flag the failed backup"
    finally:
        mariadb("DROP DATABASE IF EXISTS sop_broken_test;")
    done = sop("backup", "run")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(status_file.read_text())["last"]["ok"] is True
