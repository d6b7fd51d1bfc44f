"""The Molecule scenario (converge, idempotence, verify) on the lab host."""

from .conftest import VENV_BIN, run


def test_molecule_default_scenario(lab_apply):
    result = run([str(VENV_BIN / "molecule"), "test", "-s", "default"], timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "Idempotence completed successfully" in output or "idempotence" in output.lower()
