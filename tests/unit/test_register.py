"""The encrypted credential register (SOP step 5)."""

from __future__ import annotations

import base64
import datetime as dt
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from passlib.hash import sha512_crypt

from sop import register as reg

WANTED = [
    {"id": "admin@dinkes.example.go.id", "username": "admin@dinkes.example.go.id",
     "kind": "mailbox", "subdomain": "dinkes"},
    {"id": "hosting:dinkes", "username": "w-dinkes", "kind": "hosting", "subdomain": "dinkes"},
]


def test_passwords_are_grouped_from_an_unambiguous_alphabet():
    for _ in range(200):
        pw = reg.generate_password()
        groups = pw.split("-")
        assert len(groups) == 4 and all(len(g) == 4 for g in groups)
        assert not set(pw.replace("-", "")) & set("0O1lIio5S2Z8Buv")
    assert len({reg.generate_password() for _ in range(100)}) == 100


def test_hash_is_sha512_crypt_and_verifies():
    h = reg.hash_password("abcd-efgh")
    assert h.startswith("$6$rounds=")
    assert sha512_crypt.verify("abcd-efgh", h)


def test_a_database_user_gets_mariadbs_native_hash_at_creation_and_reset(tmp_path):
    # MariaDB: SELECT PASSWORD('password') gives this.
    assert reg.mariadb_hash("password") == "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"
    r = reg.Register(tmp_path / "r.yml", b"pw")
    r.ensure([*WANTED, {"id": "database:dinkes", "username": "w_dinkes", "kind": "database",
                        "subdomain": "dinkes"}])
    entry = r.accounts["database:dinkes"]
    assert entry["hash"] == reg.mariadb_hash(entry["password"])
    assert r.accounts["hosting:dinkes"]["hash"].startswith("$6$")
    old = entry["password"]
    r.reset("database:dinkes")
    assert entry["password"] != old and entry["hash"] == reg.mariadb_hash(entry["password"])


def test_register_round_trip_is_encrypted_and_private(tmp_path):
    path = tmp_path / "reg.vault.yml"
    r = reg.Register(path, b"s3cret")
    added = r.ensure(WANTED, today=dt.date(2026, 11, 30))
    assert added == [w["id"] for w in WANTED]
    r.save()
    raw = path.read_bytes()
    assert raw.startswith(b"$ANSIBLE_VAULT;1.1;AES256")
    assert r.accounts["hosting:dinkes"]["password"].encode() not in raw
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = reg.Register(path, b"s3cret")
    assert again.accounts == r.accounts
    assert again.accounts["hosting:dinkes"]["created"] == "2026-11-30"


def test_existing_passwords_never_change(tmp_path):
    path = tmp_path / "reg.vault.yml"
    r = reg.Register(path, b"pw")
    r.ensure(WANTED[:1])
    r.save()
    first = reg.Register(path, b"pw").accounts[WANTED[0]["id"]]["password"]
    r2 = reg.Register(path, b"pw")
    assert r2.ensure(WANTED) == [WANTED[1]["id"]]
    r2.save()
    assert reg.Register(path, b"pw").accounts[WANTED[0]["id"]]["password"] == first


def test_reset_issues_a_new_password_and_marks_the_reprint(tmp_path):
    r = reg.Register(tmp_path / "r.yml", b"pw")
    r.ensure(WANTED)
    old = r.accounts["hosting:dinkes"]["password"]
    r.reset("hosting:dinkes")
    entry = r.accounts["hosting:dinkes"]
    assert entry["password"] != old and entry["reprint"] is True
    assert sha512_crypt.verify(entry["password"], entry["hash"])
    with pytest.raises(reg.RegisterError, match="no account"):
        r.reset("nobody@example.go.id")


def test_wrong_vault_password_is_a_plain_error(tmp_path):
    path = tmp_path / "r.yml"
    r = reg.Register(path, b"right")
    r.ensure(WANTED)
    r.save()
    with pytest.raises(reg.RegisterError, match="wrong vault password"):
        reg.Register(path, b"wrong")


def test_vault_password_sources(tmp_path, monkeypatch):
    monkeypatch.delenv(reg.VAULT_ENV, raising=False)
    monkeypatch.delenv(reg.VAULT_FILE_ENV, raising=False)
    with pytest.raises(reg.RegisterError, match="no vault password"):
        reg.vault_password(None)
    f = tmp_path / "pw"
    f.write_text("from-file\n")
    assert reg.vault_password(f) == b"from-file"
    (tmp_path / "empty").write_text("")
    with pytest.raises(reg.RegisterError, match="is empty"):
        reg.vault_password(tmp_path / "empty")
    other = tmp_path / "other"
    other.write_text("from-env-file\n")
    monkeypatch.setenv(reg.VAULT_FILE_ENV, str(other))
    assert reg.vault_password(None) == b"from-env-file"
    assert reg.vault_password(f) == b"from-env-file"  # over the inventory's file
    monkeypatch.setenv(reg.VAULT_ENV, "from-env")
    assert reg.vault_password(f) == b"from-env"


def test_a_failed_save_leaves_the_old_register(tmp_path, monkeypatch):
    path = tmp_path / "r.yml"
    r = reg.Register(path, b"pw")
    r.ensure(WANTED[:1])
    r.save()
    before = path.read_bytes()
    r.ensure(WANTED)

    def boom(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(reg.os, "replace", boom)
    with pytest.raises(OSError):
        r.save()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.yml"], "no temporary file left behind"


def test_new_and_reset_accounts_are_due_for_printing_until_printed(tmp_path):
    r = reg.Register(tmp_path / "r.yml", b"pw")
    r.ensure(WANTED)
    assert r.print_due("dinkes")
    r.mark_printed("dinkes")
    assert not r.print_due("dinkes")
    r.reset("hosting:dinkes")
    assert r.print_due("dinkes")
    r.mark_printed("dinkes")
    assert not r.print_due("dinkes") and not r.accounts["hosting:dinkes"]["reprint"]
    assert not r.print_due("other")


def test_server_keys_are_generated_once_and_kept_encrypted(tmp_path):
    path = tmp_path / "register.vault.yml"
    r = reg.Register(path, b"vault-pw")
    r.ensure(WANTED)
    assert r.ensure_keys([{"name": "transfer.example.go.id", "algorithm": "hmac-sha256"}]) == \
        ["transfer.example.go.id"]
    r.save()
    secret = r.keys["transfer.example.go.id"]["secret"]
    assert len(base64.b64decode(secret, validate=True)) == 32
    assert secret.encode() not in path.read_bytes()
    again = reg.Register(path, b"vault-pw")
    assert again.ensure_keys([{"name": "transfer.example.go.id"}]) == []
    assert again.keys["transfer.example.go.id"]["secret"] == secret
    assert set(again.accounts) == {w["id"] for w in WANTED}
    # Accounts-only users of the register keep the keys when they save.
    again.reset("hosting:dinkes")
    again.save()
    assert reg.Register(path, b"vault-pw").keys["transfer.example.go.id"]["secret"] == secret


def test_each_key_gets_its_own_random_secret():
    r = reg.Register("/nonexistent/register.vault.yml", b"pw")
    r.ensure_keys([{"name": "a"}, {"name": "b"}])
    assert r.keys["a"]["secret"] != r.keys["b"]["secret"]
    assert r.keys["a"]["algorithm"] == "hmac-sha256"


def test_the_command_reads_the_vault_password_from_sop_vault_password_file(tmp_path):
    """`sop names` opens the register: with the inventory's file wrong, the
    password from $SOP_VAULT_PASSWORD_FILE opens it, and nothing else does."""
    repo = Path(__file__).resolve().parents[2]
    inventory = tmp_path / "inventory"
    shutil.copytree(repo / "inventory" / "lab", inventory)
    state = tmp_path / "state"
    state.mkdir()
    (state / "wrong").write_text("not-the-password\n")
    (state / "right").write_text("the-password\n")
    register = reg.Register(state / "register.vault.yml", b"the-password")
    register.ensure([{"id": "admin@dinkes.sumbabaratdayakab.go.id", "subdomain": "dinkes",
                      "username": "admin@dinkes.sumbabaratdayakab.go.id", "kind": "mailbox"}])
    register.save()
    (inventory / "group_vars" / "all" / "zz-test.yml").write_text(yaml.safe_dump({
        "sop_requests_dir": str(repo / "lab" / "requests"), "sop_state_dir": str(state),
        "sop_register_file": str(state / "register.vault.yml"),
        "sop_vault_password_file": str(state / "wrong")}))
    env = {k: v for k, v in os.environ.items() if k not in (reg.VAULT_ENV, reg.VAULT_FILE_ENV)}
    sop = [str(Path(sys.executable).parent / "sop"), "-i", str(inventory), "names",
           "--format", "json"]
    wrong = subprocess.run(sop, capture_output=True, text=True, env=env, timeout=120)
    assert wrong.returncode == 2 and "vault" in wrong.stderr.lower(), wrong.stderr
    right = subprocess.run(sop, capture_output=True, text=True, timeout=120,
                           env={**env, reg.VAULT_FILE_ENV: str(state / "right")})
    assert right.returncode == 0, right.stderr
    assert "admin@dinkes.sumbabaratdayakab.go.id" in right.stdout
