"""The repository stays clean under the linters the project promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "cmd",
    [
        ["ruff", "check", "."],
        ["yamllint", "--strict", "."],
        ["ansible-lint", "--offline", "--nocolor"],
    ],
    ids=["ruff", "yamllint", "ansible-lint"],
)
def test_linter_is_clean(cmd):
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
           "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
    result = subprocess.run([str(BIN / cmd[0]), *cmd[1:]], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
