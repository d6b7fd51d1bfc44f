"""`sop apply` as the administrator uses it: one at a time, safe to kill,
password resets, and no secret in anything it leaves behind."""

from __future__ import annotations

import imaplib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from .conftest import REPO, VENV_BIN, run

ZONE = "sumbabaratdayakab.go.id"
NEW_LABEL = "kominfo"


def imap_ok(address: str, password: str) -> bool:
    try:
        with imaplib.IMAP4("127.0.0.1", 143, timeout=5) as imap:
            if "STARTTLS" in imap.capabilities:
                import ssl

                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                imap.starttls(ssl_context=ctx)
            imap.login(address, password)
        return True
    except imaplib.IMAP4.error:
        return False


@pytest.fixture(scope="module")
def side_inventory(tmp_path_factory, lab_apply):
    """A copy of the lab inventory with its own state folder and one more request.

    Shared by the tests of this module (in order); restores the lab to the
    examples (the main inventory) afterwards.
    """
    tmp_path = tmp_path_factory.mktemp("side")
    inv = tmp_path / "inventory"
    shutil.copytree(REPO / "inventory" / "lab", inv)
    reqs = tmp_path / "requests"
    shutil.copytree(REPO / "lab" / "requests", reqs)
    new = yaml.safe_load((reqs / "dukcapil.yml").read_text())
    new["subdomain"] = NEW_LABEL
    new["agency"].update(name="Dinas Komunikasi dan Informatika", abbreviation="DISKOMINFO")
    (reqs / f"{NEW_LABEL}.yml").write_text(yaml.safe_dump(new, allow_unicode=True))
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "vault-password").write_text("side-test-vault-password\n")
    os.chmod(state / "vault-password", 0o600)
    extra = inv / "group_vars" / "all" / "zz-test.yml"
    extra.write_text(yaml.safe_dump({
        "sop_requests_dir": str(reqs),
        "sop_state_dir": str(state),
        "sop_register_file": str(state / "register.vault.yml"),
        "sop_vault_password_file": str(state / "vault-password"),
    }))
    yield {"inventory": inv, "state": state}
    restore = run([str(VENV_BIN / "sop"), "-i", "inventory/lab", "apply"])
    assert restore.returncode == 0, restore.stdout[-2000:] + restore.stderr


def load_register(state: Path):
    from sop.register import Register

    return Register(state / "register.vault.yml", b"side-test-vault-password")


def test_a_second_concurrent_apply_is_refused(settings, lab_apply):
    from sop.apply import apply_lock

    with apply_lock(settings.state_dir):
        result = run([str(VENV_BIN / "sop"), "-i", "inventory/lab", "apply"])
    assert result.returncode == 2
    assert "another sop apply is running" in result.stderr


def test_an_apply_killed_mid_way_loses_no_password_and_converges(side_inventory):
    inv, state = side_inventory["inventory"], side_inventory["state"]
    proc = subprocess.Popen(
        [str(VENV_BIN / "sop"), "-i", str(inv), "apply"], cwd=REPO, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env={**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"},
    )
    seen = []
    deadline = time.monotonic() + 240
    try:
        for line in proc.stdout:
            seen.append(line)
            # Step 4 starts only once the register (step 5) is saved.
            if "Langkah 4" in line or time.monotonic() > deadline:
                break
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert any("Langkah 4" in line for line in seen), "".join(seen)[-2000:]

    after_kill = {k: v["password"] for k, v in load_register(state).accounts.items()}
    new_box = f"layanan@{NEW_LABEL}.{ZONE}"
    assert new_box in after_kill, "the killed run must already have saved the new password"

    rerun = run([str(VENV_BIN / "sop"), "-i", str(inv), "apply"])
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr
    assert {k: v["password"] for k, v in load_register(state).accounts.items()} == after_kill
    assert imap_ok(new_box, after_kill[new_box])
    # The killed run printed nothing; the sheet of the new request is due and made now.
    assert f"printouts/{NEW_LABEL}.pdf" in rerun.stdout


def test_reset_password_issues_a_new_one_and_reprints(side_inventory):
    inv, state = side_inventory["inventory"], side_inventory["state"]
    box = f"admin@dinkes.{ZONE}"
    if box not in load_register(state).accounts:  # run alone, without the test before
        first = run([str(VENV_BIN / "sop"), "-i", str(inv), "apply"])
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr
    old = load_register(state).accounts[box]["password"]
    assert imap_ok(box, old)

    reset = run([str(VENV_BIN / "sop"), "-i", str(inv), "reset-password", box])
    assert reset.returncode == 0, reset.stderr
    entry = load_register(state).accounts[box]
    assert entry["password"] != old and entry["reprint"] is True

    again = run([str(VENV_BIN / "sop"), "-i", str(inv), "apply"])
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr
    assert "printouts/dinkes.pdf" in again.stdout, "the reset account's sheet is printed again"
    assert "printouts/bappeda.pdf" not in again.stdout, "untouched requests are not reprinted"
    assert imap_ok(box, entry["password"])
    assert not imap_ok(box, old)
    assert load_register(state).accounts[box]["reprint"] is False
    pdf = subprocess.run(["pdftotext", str(state / "printouts" / "dinkes.pdf"), "-"],
                         capture_output=True, text=True, check=True).stdout
    assert entry["password"] in pdf


def test_no_secret_in_runner_artifacts_logs_or_reports(settings, register, lab_apply):
    secrets = [e["password"] for e in register.accounts.values()]
    secrets += [e["hash"] for e in register.accounts.values()]
    # Runner data of this session's runs (a developer's folder may hold older ones).
    first_run = lab_apply["report"]["run_id"]
    places = [p for p in (settings.state_dir / "runs").iterdir() if p.name >= first_run]
    places += [settings.state_dir / "reports",
               Path("/var/log/postfix.log"), Path("/var/log/dovecot.log")]
    places += list(Path("/var/log/nginx").glob("*.log"))
    leaks = []
    checked = 0
    for place in places:
        files = [place] if place.is_file() else [p for p in place.rglob("*") if p.is_file()]
        for f in files:
            data = f.read_bytes()
            checked += 1
            leaks += [f"{f}" for s in secrets if s.encode() in data]
    assert checked > 10, "the runner artifacts and reports must exist to be checked"
    assert not leaks, sorted(set(leaks))[:10]
