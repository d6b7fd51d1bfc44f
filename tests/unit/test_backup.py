"""Backups (issue 19) without the lab: the status flags of `sop backup
status`, the paths `sop restore` writes (only what was named), and the
systemd units of the role as rendered (`systemd-analyze verify`)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest

from sop import backup, backup_status
from sop.config import ConfigError, load_settings

REPO = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def settings():
    return load_settings(REPO / "inventory" / "lab", REPO)


def status(hours_ago: float | None, last_ok: bool = True, message: str = "") -> dict:
    out: dict = {"host": "h"}
    if hours_ago is not None:
        when = (NOW - dt.timedelta(hours=hours_ago)).isoformat()
        out["last_good"] = {"time": when, "archive": "h-x", "original_size": 10,
                            "repository_size": 5}
    out["last"] = {"time": NOW.isoformat(), "ok": last_ok, "message": message}
    return {"rc": 0, "stdout": json.dumps(out), "stderr": ""}


def test_status_flags_old_failed_and_missing_backups(settings):
    rows = backup_status.status_rows_of(settings, {
        "fresh": status(2), "old": status(27), "failed": status(1, False, "disk full"),
        "never": status(None), "dark": {"rc": 255, "stdout": "", "stderr": "unreachable"},
    }, now=NOW)
    by_host = {r["host"]: r for r in rows}
    assert by_host["fresh"]["problems"] == [] and by_host["fresh"]["age_hours"] == 2
    assert by_host["old"]["problems"] == ["older than 26 h"]
    assert by_host["failed"]["problems"] == ["last backup failed: disk full"]
    assert "no good backup" in by_host["never"]["problems"]
    assert any("status not read" in p for p in by_host["dark"]["problems"])
    lines: list[str] = []
    backup_status.print_rows(rows, out=lines.append)
    assert sum("PERIKSA" in line for line in lines) == 4


def test_restore_paths_name_only_one_mailbox_or_site(settings):
    zone = settings.zone
    assert backup.restore_paths(settings, "mailbox", f"Admin@dinkes.{zone}") == {
        "mail": [f"/var/mail/vhosts/dinkes.{zone}/admin"], "web": []}
    assert backup.restore_paths(settings, "site", "dinkes") == {
        "mail": [], "web": ["/srv/www/dinkes"]}


def test_restore_paths_of_an_agency_are_its_own(settings):
    zone = settings.zone
    paths = backup.restore_paths(settings, "agency", "dinkes")
    assert paths["web"] == ["/srv/www/dinkes"]
    assert f"/var/mail/vhosts/dinkes.{zone}/admin" in paths["mail"]
    assert f"/etc/opendkim/keys/dinkes.{zone}" in paths["mail"]
    assert all("dinkes" in p for p in paths["mail"] + paths["web"])
    # An agency with its mail on the zone itself: its mailboxes, not the zone's key.
    paths = backup.restore_paths(settings, "agency", "bappeda")
    assert paths["mail"] == [f"/var/mail/vhosts/{zone}/bappeda"]


@pytest.mark.parametrize("kind,name", [
    ("mailbox", "../../etc@sumbabaratdayakab.go.id"), ("mailbox", "a@../etc"),
    ("mailbox", "no-domain"), ("site", "../etc"), ("site", "a/b"), ("agency", "tidak-ada"),
])
def test_restore_refuses_names_that_leave_their_folder(settings, kind, name):
    with pytest.raises(ConfigError):
        backup.restore_paths(settings, kind, name)


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd-analyze")
def test_units_render_and_verify(tmp_path):
    templates = REPO / "roles" / "backup" / "templates"
    values = {"ansible_managed": "test", "backup_schedule": "*-*-* 02:00:00",
              "backup_schedule_delay": "30min", "backup_prune_schedule": "*-*-* 05:30:00",
              "backup_user": "root"}
    units = []
    for name in ("sop-backup.service", "sop-backup.timer", "sop-backup-prune.service",
                 "sop-backup-prune.timer"):
        text = jinja2.Template((templates / f"{name}.j2").read_text()).render(values)
        # The scripts as installed: verify checks that ExecStart can run.
        text = text.replace("/usr/local/sbin/", str(REPO / "roles" / "backup" / "files") + "/")
        (tmp_path / name).write_text(text)
        units.append(str(tmp_path / name))
    done = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    (tmp_path / "sop-backup.timer").write_text("[Timer]\nOnCalendar=every full moon\n")
    done = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "sop-backup.timer")],
                          capture_output=True, text=True, check=False)
    assert done.returncode != 0 and "calendar specification" in done.stderr


def test_run_report_shows_backups_flagged_in_red(tmp_path, settings):
    import sys

    sys.path.insert(0, str(REPO / "tests" / "unit"))
    from test_documents import make_run, make_settings

    from sop.documents import render_report

    run = make_run()
    run["backups"] = backup_status.status_rows_of(
        settings, {"mail": status(3), "web": status(30)}, now=NOW)
    paths = render_report(run, make_settings(), tmp_path)
    markdown = paths["md"].read_text()
    assert "Cadangan data (backup)" in markdown
    mail_line = next(line for line in markdown.splitlines() if line.startswith("| mail |"))
    web_line = next(line for line in markdown.splitlines() if line.startswith("| web |"))
    assert "Baik" in mail_line and "**PERIKSA**: older than 26 h" in web_line
    # The PDF's HTML: the flagged row in red, the good one not.
    from sop import documents

    html = documents._environment(make_settings()).get_template("report.html.j2").render(
        documents._report_context(run, make_settings()))
    rows = [r for r in html.split("<tr") if "<td>mail</td>" in r or "<td>web</td>" in r]
    assert len(rows) == 2
    assert "color: #c00000" in rows[1] and "color: #c00000" not in rows[0]
