"""The production path without servers: which checkout `sop` acts on, an
inventory holding vault-encrypted secrets read without a password, the
controller of record and its one lock, and the Apply workflow's shape.

The same path with servers, certificates and the workflows run step by step
is tests/multihost/test_production.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from ansible.parsing.vault import VaultLib, VaultSecret

from sop import apply as sop_apply
from sop.config import load_settings

REPO = Path(__file__).resolve().parents[2]
SOP = Path(sys.executable).parent / "sop"


def run(*args, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SOP_")}
    return subprocess.run([str(SOP), *map(str, args)], cwd=cwd, env={**clean, **(env or {})},
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def second_clone(tmp_path) -> Path:
    """Another checkout of this repository (the files that make one)."""
    clone = tmp_path / "clone"
    clone.mkdir()
    for name in ("ansible.cfg", "playbooks", "inventory", "requests", "roles",
                 "filter_plugins", "action_plugins", "strategy_plugins", "library", "lab"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, clone / name)
        else:
            shutil.copy2(src, clone / name)
    return clone


def lab_request(label: str) -> str:
    return (REPO / "lab" / "requests" / "dinkes.yml").read_text() \
        .replace("subdomain: dinkes", f"subdomain: {label}")


def test_sop_acts_on_the_checkout_it_runs_in_not_the_one_it_was_installed_from(second_clone):
    # The clone has three requests where the installed checkout has four.
    (second_clone / "lab" / "requests" / "dinkes.yml").unlink()
    here = run("-i", "inventory/lab", "validate", cwd=second_clone)
    assert here.returncode == 0 and "3 request(s) valid" in here.stdout, here.stderr
    settings_there = load_settings(second_clone / "inventory" / "lab", repo=second_clone)
    assert settings_there.repo_root == second_clone
    assert settings_there.path("sop_requests_dir") == second_clone / "lab" / "requests"
    # From a folder inside the clone, too; and --repo names one explicitly.
    inner = run("validate", cwd=second_clone / "roles")
    assert inner.returncode == 0 and "3 request(s) valid" in inner.stdout, inner.stderr
    named = run("--repo", second_clone, "validate", cwd=REPO)
    assert named.returncode == 0 and "3 request(s) valid" in named.stdout


def test_outside_any_checkout_sop_says_so_instead_of_picking_one(tmp_path):
    result = run("validate", cwd=tmp_path)
    assert result.returncode == 2
    assert "not inside a checkout of this repository" in result.stderr
    assert "--repo" in result.stderr


def test_validate_without_paths_reads_the_inventorys_request_folder(second_clone):
    result = run("-i", "inventory/lab", "validate", cwd=second_clone)
    assert result.returncode == 0 and "4 request(s) valid" in result.stdout
    for path in (second_clone / "lab" / "requests").glob("*.yml"):
        path.unlink()
    empty = run("-i", "inventory/lab", "validate", cwd=second_clone)
    assert empty.returncode == 0
    assert "No request files in" in empty.stdout and "lab/requests" in empty.stdout
    # production's folder (requests/) holds no request yet: said plainly too.
    prod = run("-i", "inventory/production", "validate", cwd=second_clone)
    assert prod.returncode == 0 and "No request files in" in prod.stdout, prod.stderr


def encrypt_vault(inventory: Path, password: bytes, content: str) -> Path:
    vault = inventory / "group_vars" / "all" / "vault.yml"
    vault.write_bytes(VaultLib([("default", VaultSecret(password))]).encrypt(content))
    return vault


def test_an_inventory_with_vault_secrets_validates_and_plans_without_the_password(second_clone):
    inventory = second_clone / "inventory" / "production"
    encrypt_vault(inventory, b"not-given-to-sop", "---\nsop_acme_tsig_secret: c2VjcmV0\n")
    # A value encrypted inline is left out the same way.
    sop_yml = inventory / "group_vars" / "all" / "sop.yml"
    inline = VaultLib([("default", VaultSecret(b"x"))]).encrypt("inline").decode()
    sop_yml.write_text(sop_yml.read_text() + "sop_extra_secret: !vault |\n"
                       + "".join(f"  {line}\n" for line in inline.splitlines()))
    (second_clone / "requests" / "dinkes.yml").write_text(lab_request("dinkes"))
    for kind in ("validate", "plan"):
        args = ["-i", "inventory/production", kind]
        if kind == "plan":
            subprocess.run(["git", "init", "-q", "-b", "main"], cwd=second_clone, check=True)
            subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                            "--allow-empty", "-m", "base"], cwd=second_clone, check=True)
            args += ["--base", "main", "--format", "json"]
        result = run(*args, cwd=second_clone)
        assert result.returncode == 0, f"{kind}: {result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stderr and "vault" not in result.stderr.lower()
    settings = load_settings(inventory, repo=second_clone)
    assert "sop_acme_tsig_secret" not in settings.vars
    assert "sop_extra_secret" not in settings.vars
    assert settings.zone == "sumbabaratdayakab.go.id"


def test_ansible_playbook_reads_the_inventory_vault_with_the_same_password(second_clone, tmp_path):
    inventory = second_clone / "inventory" / "production"
    encrypt_vault(inventory, b"the-controller-password", "---\nsop_acme_tsig_secret: c2VjcmV0\n")
    shutil.copytree(REPO / "scripts", second_clone / "scripts",
                    ignore=shutil.ignore_patterns("__pycache__"))
    password_file = tmp_path / "vault-password"
    password_file.write_text("the-controller-password\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOP_")}
    cmd = [str(Path(sys.executable).parent / "ansible"), "-i", "inventory/production",
           "localhost", "-m", "ansible.builtin.debug", "-a", "var=sop_acme_tsig_secret"]
    good = subprocess.run(cmd, cwd=second_clone, capture_output=True, text=True,
                          env={**env, "SOP_VAULT_PASSWORD_FILE": str(password_file)})
    assert good.returncode == 0 and "c2VjcmV0" in good.stdout, good.stdout + good.stderr
    from_env = subprocess.run(cmd, cwd=second_clone, capture_output=True, text=True,
                              env={**env, "SOP_VAULT_PASSWORD": "the-controller-password"})
    assert from_env.returncode == 0 and "c2VjcmV0" in from_env.stdout
    wrong = subprocess.run(cmd, cwd=second_clone, capture_output=True, text=True,
                           env={**env, "SOP_VAULT_PASSWORD": "wrong"})
    assert wrong.returncode != 0 and "c2VjcmV0" not in wrong.stdout
    assert "Decryption failed" in wrong.stdout + wrong.stderr


def test_production_is_applied_only_on_its_controller():
    settings = load_settings(REPO / "inventory" / "production", repo=REPO)
    assert [c.name for c in settings.controllers] == ["ctl.sumbabaratdayakab.go.id"]
    with pytest.raises(sop_apply.ApplyError) as refused:
        sop_apply.require_controller(settings)
    message = str(refused.value)
    assert "ctl.sumbabaratdayakab.go.id (192.0.2.5)" in message and "controller" in message
    # The lab has no controller group: it applies where it is.
    sop_apply.require_controller(load_settings(REPO / "inventory" / "lab", repo=REPO))
    # Through the command: stopped before anything else, exit 2.
    result = run("-i", "inventory/production", "apply", cwd=REPO)
    assert result.returncode == 2 and "applied only on its controller" in result.stderr


def test_the_controller_is_this_machine_when_its_address_is_ours(second_clone):
    hosts = second_clone / "inventory" / "production" / "hosts.yml"
    doc = yaml.safe_load(hosts.read_text())
    doc["all"]["hosts"]["ctl.sumbabaratdayakab.go.id"]["ansible_host"] = "127.0.0.1"
    hosts.write_text(yaml.safe_dump(doc))
    settings = load_settings(hosts.parent, repo=second_clone)
    sop_apply.require_controller(settings)  # no exception


def test_one_lock_for_every_checkout_and_state_folder(tmp_path):
    lock = tmp_path / "apply.lock"
    holding = threading.Event()
    release = threading.Event()

    def hold():
        with sop_apply.apply_lock(tmp_path / "state-a", lock_file=lock):
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(10)
    try:
        with pytest.raises(sop_apply.ApplyError, match="another sop apply is running"):
            with sop_apply.apply_lock(tmp_path / "state-b", lock_file=lock):
                pass
        # --wait: waits, then goes ahead once the first is done.
        threading.Timer(1.0, release.set).start()
        started = time.monotonic()
        with sop_apply.apply_lock(tmp_path / "state-b", wait=30, lock_file=lock):
            waited = time.monotonic() - started
        assert holding.is_set() and release.is_set() and waited > 0
    finally:
        release.set()
        holder.join(10)
    # Released, the file names nobody: a holder written there is a live one.
    assert lock.read_text() == ""
    # The lab (no sop_apply_lock_file): the state folder's own lock.
    lab = load_settings(REPO / "inventory" / "lab", repo=REPO)
    assert lab.lock_file == lab.state_dir / "apply.lock"
    prod = load_settings(REPO / "inventory" / "production", repo=REPO)
    assert prod.lock_file == Path("/var/lib/sop/apply.lock")


def test_the_register_of_production_lives_on_the_controller_not_in_git():
    prod = load_settings(REPO / "inventory" / "production", repo=REPO)
    assert prod.path("sop_register_file") == Path("/var/lib/sop/register.vault.yml")
    assert not (REPO / "inventory" / "production" / "register.vault.yml").exists()


# --- The Apply workflow -------------------------------------------------------------

def apply_workflow() -> dict:
    return yaml.safe_load((REPO / ".github" / "workflows" / "apply.yml").read_text())


def test_the_apply_workflow_runs_on_merge_on_the_controller_and_never_pushes():
    wf = apply_workflow()
    on = wf[True] if True in wf else wf["on"]  # YAML 1.1 reads `on` as true
    assert on["push"]["branches"] == ["main"]
    assert set(on["push"]["paths"]) == {"requests/**", "inventory/production/**"}
    assert "schedule" in on and "workflow_dispatch" in on
    assert wf["permissions"] == {"contents": "read"}
    assert wf["concurrency"] == {"group": "sop-apply-production", "cancel-in-progress": False}
    (job,) = wf["jobs"].values()
    assert job["runs-on"] == ["self-hosted", "sop-controller"]
    text = (REPO / ".github" / "workflows" / "apply.yml").read_text()
    assert "secrets." not in text and "git push" not in text and "contents: write" not in text
    checkout = next(s for s in job["steps"] if "uses" in s)
    assert checkout["with"]["persist-credentials"] is False
    runs = [s["run"] for s in job["steps"] if "run" in s]
    assert runs == ["./scripts/controller-apply"]
    script = (REPO / "scripts" / "controller-apply").read_text()
    assert "--wait" in script and "-i inventory/production apply" in script


def test_the_vault_password_never_reaches_the_runner_environment(tmp_path, monkeypatch):
    settings = load_settings(REPO / "inventory" / "lab", repo=REPO)
    monkeypatch.setenv("SOP_VAULT_PASSWORD", "s3cret-from-env")
    monkeypatch.delenv("SOP_VAULT_PASSWORD_FILE", raising=False)
    seen = {}
    with sop_apply._vault_password_file(settings, tmp_path) as path:
        seen["env"] = dict(os.environ)
        seen["mode"] = path.stat().st_mode & 0o777
        seen["content"] = path.read_text().strip()
    assert "SOP_VAULT_PASSWORD" not in seen["env"]
    assert seen["mode"] == 0o600 and seen["content"] == "s3cret-from-env"
    assert not path.exists()
    assert os.environ["SOP_VAULT_PASSWORD"] == "s3cret-from-env"  # given back afterwards
