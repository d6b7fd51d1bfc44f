"""SOP step 3 and record 2 on a file system whose size the test controls.

A 64 MiB tmpfs is mounted and the storage paths are pointed inside it
(``-e`` for the playbook, an inventory overlay for ``sop apply``): the lab's
example requests (about 1.6 GiB of quotas) must be refused before any change,
a small request must be applied, and the figures of the storage record must
be those of the data the test writes. The lab is put back by a normal run
and the tmpfs unmounted when the module ends.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import REPO, VENV_BIN, playbook, recap, run, snapshot

TMPFS = Path("/srv/sop-tmpfs-test")
MAIL = TMPFS / "mail"
WEB = TMPFS / "www"
MiB = 2**20
ZONE = "sumbabaratdayakab.go.id"
STORAGE_VARS = ["-e", f"sop_mail_storage_path={MAIL}", "-e", f"sop_web_storage_path={WEB}"]

SMALL_REQUEST = """\
letter:
  number: "000.1/900/UJI/XI/2026"
  date: 2026-11-20
  subject: Permohonan subdomain dan email untuk uji ruang penyimpanan
agency:
  name: Kantor Pemantauan Uji
  abbreviation: PANTAU
  category: instansi
contact:
  name: Yohana Lende
  nip: "199001012015012001"
  position: Pengelola Situs
  phone: "+62 812-0000-1234"
subdomain: pantau
hosting:
  quota: 8M
mail:
  domain: subdomain
  mailboxes:
    - local_part: admin
      holder: Yohana Lende
      quota: 8M
"""


def _unmount() -> None:
    for _ in range(10):
        if subprocess.run(["mountpoint", "-q", str(TMPFS)]).returncode != 0:
            return
        if subprocess.run(["umount", str(TMPFS)], capture_output=True).returncode == 0:
            return
        time.sleep(0.5)  # a daemon may still hold a file open for a moment
    subprocess.run(["umount", "-l", str(TMPFS)], check=True)


@pytest.fixture(scope="module")
def tmpfs(lab_apply):
    TMPFS.mkdir(exist_ok=True)
    _unmount()  # a leftover of an interrupted run
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0755", "tmpfs", str(TMPFS)],
                   check=True)
    try:
        yield TMPFS
    finally:
        # Put the lab back: a normal run points every daemon at the inventory's paths again.
        restored = playbook()
        subprocess.run(["userdel", "w-pantau"], capture_output=True)
        _unmount()
        TMPFS.rmdir()
        assert restored.returncode == 0, restored.stdout[-3000:]


@pytest.fixture(scope="module")
def overlay(tmp_path_factory):
    """The lab inventory with the storage paths in the tmpfs and its own state folder."""
    base = tmp_path_factory.mktemp("storage")
    inv = base / "inventory"
    shutil.copytree(REPO / "inventory" / "lab", inv)
    state = base / "state"
    state.mkdir(mode=0o700)
    (state / "vault-password").write_text("uji-ruang-penyimpanan\n")
    os.chmod(state / "vault-password", 0o600)
    requests = base / "requests"
    requests.mkdir()
    (requests / "pantau.yml").write_text(SMALL_REQUEST)

    def with_requests(folder: Path) -> Path:
        (inv / "group_vars" / "all" / "zz-storage-test.yml").write_text(
            f"sop_requests_dir: {folder}\n"
            f"sop_state_dir: {state}\n"
            f"sop_mail_storage_path: {MAIL}\n"
            f"sop_web_storage_path: {WEB}\n"
        )
        return inv

    return {"inventory": with_requests, "state": state, "small": requests,
            "records": state / "records" / "storage"}


def sop(*args: str) -> subprocess.CompletedProcess:
    return run([str(VENV_BIN / "sop"), *args])


def records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def latest_report(state: Path) -> tuple[dict, Path]:
    newest = sorted((state / "reports").glob("*.json"))[-1]
    return json.loads(newest.read_text()), newest.with_suffix(".pdf")


def test_requests_that_do_not_fit_are_refused_before_any_change(tmpfs, overlay):
    before = snapshot()
    result = playbook(*STORAGE_VARS)
    assert result.returncode != 0
    out = result.stdout
    assert "Not enough storage on lab" in out
    # Names host, paths, the space needed and the space available (64 MiB).
    assert f"lab: {MAIL}, {WEB} on {TMPFS}: needs " in out
    assert "available 64.00 MiB" in out and "short by" in out
    assert all(c["changed"] == 0 for c in recap(out).values()), recap(out)
    assert snapshot() == before
    assert list(TMPFS.iterdir()) == [], "nothing may be created in the refused storage"

    # The wrapper refuses the same way and keeps the figures as a record.
    inv = overlay["inventory"](REPO / "lab" / "requests")
    result = sop("-i", str(inv), "apply")
    assert result.returncode == 4, result.stdout + result.stderr  # the run failed (refused)
    assert "Not enough storage on lab" in result.stderr
    assert snapshot() == before
    assert list(TMPFS.iterdir()) == []
    (record,) = records(overlay["records"])
    assert record["status"] == "refused"
    (mount,) = [m for m in record["mounts"] if m["mount"] == str(TMPFS)]
    assert mount["capacity_bytes"] == 64 * MiB and not mount["ok"]
    assert mount["allocated_bytes"] > 1024 * MiB
    assert not (overlay["state"] / "register.vault.yml").exists(), "no account may be registered"


def test_requests_that_fit_are_applied_and_the_record_holds_what_was_written(tmpfs, overlay):
    inv = overlay["inventory"](overlay["small"])
    result = sop("-i", str(inv), "apply")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (WEB / "pantau" / "public" / "index.html").exists()
    first = records(overlay["records"])[-1]
    assert first["status"] == "ok" and first["overcommit"] is False
    (mount,) = [m for m in first["mounts"] if m["mount"] == str(TMPFS)]
    assert mount["ok"] and mount["allocated_bytes"] == 16 * MiB
    assert mount["paths"] == [str(MAIL), str(WEB)]

    # Write 7 MiB into the site and a 4 MiB message into the mailbox.
    site = WEB / "pantau" / "public" / "arsip-uji.bin"
    site.write_bytes(os.urandom(7 * MiB))
    owner = pwd.getpwnam("w-pantau")
    os.chown(site, owner.pw_uid, owner.pw_gid)
    maildir = MAIL / f"pantau.{ZONE}" / "admin" / "Maildir"
    vmail = pwd.getpwnam("vmail")
    for sub in ("", "cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    for folder in (maildir.parent.parent, maildir.parent, maildir, *maildir.iterdir()):
        os.chown(folder, vmail.pw_uid, vmail.pw_gid)
    head = f"From: uji@example.net\r\nTo: admin@pantau.{ZONE}\r\nSubject: arsip\r\n\r\n"
    line = "x" * 998 + "\r\n"
    body = (line * (4 * MiB // len(line) + 1))[: 4 * MiB - len(head)]
    message = maildir / "new" / "1796000000.M1P1.uji"
    message.write_bytes((head + body).encode())
    os.chown(message, vmail.pw_uid, vmail.pw_gid)

    result = sop("-i", str(inv), "apply", "--overcommit")
    assert result.returncode == 0, result.stdout + result.stderr
    second = records(overlay["records"])[-1]
    assert second["run_id"] != first["run_id"]
    assert second["overcommit"] is True and second["overcommitted"] == []

    def account(record, account_id):
        (agency,) = [a for a in record["agencies"] if a["subdomain"] == "pantau"]
        return next(a for a in agency["accounts"] if a["id"] == account_id), agency

    web_before, _ = account(first, "hosting:pantau")
    web_after, agency = account(second, "hosting:pantau")
    grown = web_after["used_bytes"] - web_before["used_bytes"]
    assert 7 * MiB <= grown <= 7 * MiB + 4096, grown  # du; the folder's own entry grows a little
    assert web_after["quota_bytes"] == 8 * MiB and web_after["percent"] >= 87.5

    box_before, _ = account(first, f"admin@pantau.{ZONE}")
    box_after, _ = account(second, f"admin@pantau.{ZONE}")
    assert box_after["source"] == "dovecot"
    assert box_after["used_bytes"] - box_before["used_bytes"] == 4 * MiB  # Dovecot's own count
    assert 4 * MiB <= box_after["disk_bytes"] - box_before["disk_bytes"] < 4 * MiB + 64 * 1024

    (m1,) = [m for m in first["mounts"] if m["mount"] == str(TMPFS)]
    (m2,) = [m for m in second["mounts"] if m["mount"] == str(TMPFS)]
    assert 11 * MiB <= m2["used_bytes"] - m1["used_bytes"] < 11 * MiB + 128 * 1024
    assert 11 * MiB <= m1["free_bytes"] - m2["free_bytes"] < 11 * MiB + 256 * 1024
    stat = os.statvfs(TMPFS)
    assert m2["capacity_bytes"] == stat.f_blocks * stat.f_frsize == 64 * MiB

    # Supervision: the site is at 87.5 % of its quota, the mailbox at 50 %.
    report, pdf = latest_report(overlay["state"])
    (listed,) = report["supervision"]["agencies"]
    assert listed["agency"] == "Kantor Pemantauan Uji"
    assert listed["contact"]["name"] == "Yohana Lende"
    assert listed["contact"]["phone"] == "+62 812-0000-1234"
    assert [a["kind"] for a in listed["accounts"]] == ["hosting"]
    assert agency["contact"]["name"] == "Yohana Lende"
    (forecast,) = [f for f in report["forecast"] if f["mount"] == str(TMPFS)]
    assert forecast["status"] == "insufficient_history"  # minutes apart, not a trend

    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], check=True,
                          capture_output=True, text=True).stdout
    assert "Perkiraan pertumbuhan pemakaian ruang" in text
    assert "Yohana Lende" in text and "87,5%" in text

    # `sop storage` prints the same list on its own, and as JSON.
    shown = sop("-i", str(inv), "storage")
    assert shown.returncode == 0, shown.stderr
    assert "Kantor Pemantauan Uji (pantau)" in shown.stdout and "87,5%" in shown.stdout
    assert "Yohana Lende (Pengelola Situs)" in shown.stdout
    data = json.loads(sop("-i", str(inv), "storage", "--json").stdout)
    assert data["record"] == second["run_id"]
    assert [a["subdomain"] for a in data["supervision"]] == ["pantau"]

