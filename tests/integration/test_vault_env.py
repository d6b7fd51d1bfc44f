"""The vault password given in the environment ($SOP_VAULT_PASSWORD) reaches
Ansible as a private file for the run, never through ansible-runner's
environment: runner artifacts keep the environment of every run (the
`command` file, 20 runs kept), so a password there would sit on disk."""

from __future__ import annotations

import os
import subprocess

from .conftest import REPO, VENV_BIN


def test_a_vault_password_from_the_environment_is_in_no_runner_artifact(settings, lab_apply):
    password = settings.path("sop_vault_password_file").read_text().strip()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOP_VAULT")}
    env["SOP_VAULT_PASSWORD"] = password
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
    before = set((settings.state_dir / "runs").iterdir())
    result = subprocess.run([str(VENV_BIN / "sop"), "-i", "inventory/lab", "apply"], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    (run_dir,) = set((settings.state_dir / "runs").iterdir()) - before
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    commands = [p for p in files if p.name == "command"]
    assert commands, "ansible-runner keeps the run's command and environment"
    assert any("SOP_VAULT_PASSWORD_FILE" in p.read_text() for p in commands)
    leaks = [str(p) for p in files if password.encode() in p.read_bytes()]
    assert not leaks, leaks
    assert not (run_dir / ".vault-password").exists(), "the run's password file is removed"
