"""The Molecule scenario (syntax, converge, idempotence, verify) on the lab host."""

import re

from .conftest import VENV_BIN, run

ANSI = re.compile(r"\x1b\[[0-9;]*m")
RECAP = re.compile(r"(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


def between(text: str, start: str, end: str) -> str:
    text = text[text.index(start):]
    return text[:text.index(end)] if end in text else text


def test_molecule_default_scenario(lab_apply, requests):
    result = run([str(VENV_BIN / "molecule"), "test", "-s", "default"], timeout=900)
    output = ANSI.sub("", result.stdout + result.stderr)
    assert result.returncode == 0, output[-4000:]
    for action in ("syntax", "converge", "idempotence", "verify"):
        assert f"➜ {action}: Executed: Successful" in output, action
    # The second converge changed nothing on any host.
    second = between(output, "➜ idempotence: Executing", "➜ verify: Executing")
    counters = RECAP.findall(second)
    assert {host for host, *_ in counters} == {"lab", "localhost"}, second[-2000:]
    assert all(changed == "0" and failed == "0" for _, _, changed, _, failed in counters)
    # Verify sent a mail to every mailbox of the lab and read it back.
    verify = between(output, "➜ verify: Executing", "➜ verify: Executed")
    sent = between(verify, "TASK [Send a mail to each mailbox", "PLAY RECAP")
    boxes = {box["address"] for req in requests if req.get("mail")
             for box in req["mail"]["mailboxes"]}
    assert set(re.findall(r"ok: \[lab\] => \(item=(\S+@\S+)\)", sent)) == boxes, sent
    assert "failed:" not in sent
    assert [failed for *_, failed in RECAP.findall(verify)] == ["0", "0"]
