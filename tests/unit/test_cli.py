"""`sop validate` as a user runs it: a process, its exit code and its lines.

Whatever bytes or names the files hold, the command exits 1 with one line per
problem naming file, line and field, and never shows a traceback. A wrong
inventory exits 2. Also the synthetic set of sop.synth and its timing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sop import synth
from sop.validate import validate_paths

REPO = Path(__file__).resolve().parents[2]
SOP = Path(sys.executable).parent / "sop"
LAB = str(REPO / "inventory" / "lab")
PRODUCTION = str(REPO / "inventory" / "production")


def sop(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(SOP), *args], cwd=cwd or REPO, capture_output=True,
                          timeout=120)


def good_text(label: str) -> str:
    return synth.render(synth.request(0) | {"subdomain": label})


# Hostile files: name -> content (bytes), or a callable making the entry.
HOSTILE: dict[str, bytes] = {
    "kosong.yml": b"",
    "biner.yml": bytes(range(256)) * 4,
    "utf16.yml": "letter: x\n".encode("utf-16"),
    "nul.yml": b"letter:\n  number: a\x00b\n",
    "rusak.yml": b"letter: [\n",
    "tab.yml": b"letter:\n\tnumber: x\n",
    "bom.yml": ("\ufeff" + "- a\n").encode(),
    "bomb.yml": (b'a: &a ["x","x","x","x","x","x","x","x","x"]\n'
                 + b"".join(f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n".encode()
                            for p, n in zip("abcdefgh", "bcdefghi", strict=True))),
    "python.yml": b'letter: !!python/object/apply:os.system ["touch /tmp/sop-pwned"]\n',
    "deep.yml": b"letter: " + b"[" * 5000 + b"]" * 5000 + b"\n",
    "escape.yml": "subdomain: \x1b[31mred\nletter: \u202eevil\n".encode(),
    "lines.yml": "letter:\n  subject: a\u2028b\n  number: x\u0085y\n".encode(),
    "keys.yml": b"? [a, b]\n: 1\n<<: {x: 1}\n1.5: x\n",
    "besar.yml": b"# " + b"x" * (64 * 1024) + b"\n",
    "dup.yml": (good_text("dup") + "subdomain: dup\n").encode(),
    "nama\nbaris.yml": good_text("nama").encode(),
    "tab\tname.yml": b"letter: x\n",
    "\u202e.yml": b"letter: x\n",
}


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    folder = tmp_path / "permohonan"
    folder.mkdir()
    for name, content in HOSTILE.items():
        (folder / name).write_bytes(content)
    os.mkfifo(folder / "fifo.yml")
    (folder / "zero.yml").symlink_to("/dev/zero")
    (folder / "passwd.yml").symlink_to("/etc/passwd")
    (folder / "loop.yml").symlink_to("loop.yml")
    (folder / "dangling.yml").symlink_to("nowhere.yml")
    (folder / "dir.yml").mkdir()  # a folder named like a request: skipped
    latin1 = os.fsencode(str(folder)) + b"/caf\xe9.yml"
    with open(latin1, "wb") as stream:
        stream.write(b"letter: x\n")
    return folder


LINE = re.compile(r"(?P<file>[^:]+?)(?::(?P<line>\d+))?: (?P<rest>.+)")


def test_hostile_files_give_exit_1_and_one_line_per_problem(hostile: Path) -> None:
    result = sop("-i", LAB, "validate", str(hostile))  # a hang (fifo, /dev/zero) times out
    err = result.stderr.decode("utf-8")  # every line is valid UTF-8, whatever the names
    assert result.returncode == 1
    assert result.stdout == b""
    assert "Traceback" not in err and "Error" not in err.split(":", 1)[0]
    assert not Path("/tmp/sop-pwned").exists()
    lines = err.splitlines()
    assert lines[-1] == f"{len(lines) - 1} problem(s) found."
    for line in lines[:-1]:
        assert line.isprintable(), repr(line)
        match = LINE.fullmatch(line)
        assert match and match["file"].startswith(str(hostile) + "/"), line
    named = {Path(LINE.fullmatch(line)["file"]).name for line in lines[:-1]}
    expected = {name for name in HOSTILE if name.isprintable()} | {
        "fifo.yml", "zero.yml", "passwd.yml", "loop.yml", "dangling.yml",
        "nama\\x0abaris.yml", "tab\\x09name.yml", "\\u202e.yml", "caf\\xe9.yml"}
    assert named == expected - {"nama\nbaris.yml"}
    by_file = {}
    for line in lines[:-1]:
        match = LINE.fullmatch(line)
        by_file.setdefault(Path(match["file"]).name, []).append(match)
    # Problems inside a document carry a line and a field; links are refused unread.
    assert by_file["dup.yml"][0]["line"] and "subdomain: appears twice" in by_file["dup.yml"][
        0]["rest"]
    assert "symbolic link" in by_file["passwd.yml"][0]["rest"]
    assert "root:" not in err  # /etc/passwd was never read
    assert "nama\\x0abaris.yml" in by_file  # the line break in the name is shown, escaped


def test_a_valid_set_exits_0(tmp_path: Path) -> None:
    synth.generate(5, tmp_path)
    result = sop("-i", PRODUCTION, "validate", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"5 request(s) valid.\n" and result.stderr == b""


def test_a_missing_path_exits_1(tmp_path: Path) -> None:
    result = sop("-i", LAB, "validate", str(tmp_path / "tidak-ada.yml"))
    assert result.returncode == 1
    assert result.stderr.decode().splitlines() == [
        f"{tmp_path / 'tidak-ada.yml'}: does not exist", "1 problem(s) found."]


def test_an_invalid_policy_exits_2_without_traceback(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory"
    (inventory / "group_vars" / "all").mkdir(parents=True)
    (inventory / "hosts.yml").write_text("all:\n  hosts:\n    localhost:\n")
    (inventory / "group_vars" / "all" / "sop.yml").write_text(
        "sop_zone: sumbabaratdayakab.go.id\nsop_policy:\n  max_mailbox_quota: lots\n")
    synth.generate(1, tmp_path / "requests")
    for command in (["validate", str(tmp_path / "requests")],
                    ["new", "--no-input", "--output", str(tmp_path / "requests"),
                     "--subdomain", "x"]):
        result = sop("-i", str(inventory), *command)
        err = result.stderr.decode()
        assert result.returncode == 2, (command, err)
        assert "Traceback" not in err
        assert "max_mailbox_quota" in err and err.startswith(f"sop: {inventory}:")


def test_a_missing_inventory_exits_2(tmp_path: Path) -> None:
    result = sop("-i", str(tmp_path / "none"), "validate", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.decode().startswith("sop: inventory ")


def test_help_lists_the_commands() -> None:
    result = sop("--help")
    assert result.returncode == 0
    out = result.stdout.decode()
    for command in ("validate", "plan", "new", "apply", "print", "reset-password"):
        assert command in out


# --- Synthetic requests and the time to validate 500 of them ------------------------------


@pytest.mark.parametrize("policy", [
    {"max_mailbox_quota": "2G", "max_hosting_quota": "5G", "max_agency_quota": "10G",
     "reserved_labels": ["lab", "test", "dev", "staging", "intranet"]},  # the lab's
    {"max_mailbox_quota": "5G", "reserved_labels": ["portal", "api", "cdn", "vpn", "sso"]},
])
def test_synthetic_requests_are_valid_and_varied(tmp_path: Path, policy: dict) -> None:
    paths = synth.generate(500, tmp_path)
    assert len(paths) == 500 and len({p.name for p in paths}) == 500
    requests, problems = validate_paths([tmp_path], policy)
    assert problems == [] and len(requests) == 500
    kinds = {r["agency"]["category"] for r in requests}
    assert kinds == {"instansi", "layanan_publik", "kegiatan"}
    assert any(r["hosting"] is None for r in requests)  # mail-only
    assert any(r["mail"] is None for r in requests)  # web-only
    assert any(r["mail"] and r["mail"]["domain"] == "parent" for r in requests)
    assert any(r["mail"] and any("@gmail.com" in t for a in r["mail"]["aliases"]
                                 for t in a["to"]) for r in requests)


def test_synthetic_requests_are_deterministic(tmp_path: Path) -> None:
    first = [p.read_bytes() for p in synth.generate(20, tmp_path / "a")]
    second = [p.read_bytes() for p in synth.generate(20, tmp_path / "b")]
    assert first == second
    assert yaml.safe_load(first[3])["subdomain"] == "desa-0004"


def test_synth_from_the_shell(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "sop.synth", "3", str(tmp_path)],
                            capture_output=True, text=True, cwd=REPO / "scripts")
    assert result.returncode == 0 and len(list(tmp_path.glob("*.yml"))) == 3
    bad = subprocess.run([sys.executable, "-m", "sop.synth", "many", str(tmp_path)],
                         capture_output=True, text=True, cwd=REPO / "scripts")
    assert bad.returncode == 2 and "usage" in bad.stderr


def test_validating_500_requests_with_the_command(tmp_path: Path) -> None:
    # How long it takes is scripts/bench's business (target 2 s), not a test's.
    synth.generate(500, tmp_path)
    result = sop("-i", PRODUCTION, "validate", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"500 request(s) valid.\n"


# --- Issue 17: one exit code per problem, help for every command, no tracebacks -------------


def lab_copy(tmp_path: Path, requests: Path) -> Path:
    """The lab inventory with its requests, state and records in tmp_path."""
    import shutil

    inv = tmp_path / "inventory"
    shutil.copytree(REPO / "inventory" / "lab", inv)
    state = tmp_path / "state"
    (inv / "group_vars" / "all" / "zz-test.yml").write_text(
        f"sop_requests_dir: {requests}\nsop_state_dir: {state}\n"
        f"sop_records_dir: {state}/records\n")
    return inv


def sop_env(*args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(SOP), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "SOP_VAULT_PASSWORD": "uji",
                                            **(env or {})}, **kw)


def test_every_command_help_has_a_description_and_its_exit_codes() -> None:
    from sop import cli

    parser = cli.build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    assert set(sub.choices) >= {"validate", "apply", "print", "reset-password", "plan", "new",
                                "storage", "names", "backup", "restore"}
    for name, command in sub.choices.items():
        text = command.format_help()
        assert command.description and len(command.description) > 40, name
        assert "exit codes:" in text, name
        codes = re.findall(r"^  (\d+) +\S", text.split("exit codes:")[1], re.M)
        assert codes[0] == "0" and "2" in codes, (name, codes)
        assert all(len(line) <= 80 for line in text.splitlines()), name
    assert "141" in parser.format_help() and "exit codes:" in parser.format_help()


@pytest.mark.parametrize("command", [["validate"], ["apply"], ["print"], ["names"],
                                     ["plan", "--format", "json"]])
def test_invalid_requests_exit_1_in_every_command(tmp_path: Path, command: list[str]) -> None:
    requests = tmp_path / "requests"
    requests.mkdir()
    (requests / "rusak.yml").write_text("letter: [\n")
    inv = lab_copy(tmp_path, requests)
    args = [*command, str(requests)] if command[0] in ("validate", "plan") else command
    result = sop_env("-i", str(inv), *args)
    assert result.returncode == 1, (command, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert "problem" in result.stderr
    assert not (tmp_path / "state" / "register.vault.yml").exists()


def test_a_failed_apply_exits_4_and_says_why(monkeypatch, capsys) -> None:
    from sop import apply, cli, commands

    record = {"status": "failed", "failure": "mail1: create the mailboxes: tidak terjangkau",
              "report": {"md": "/x.md"}, "printouts": [], "changed": {}, "requests": []}
    monkeypatch.setattr(apply, "apply", lambda settings, **kw: record)
    monkeypatch.setattr(commands, "load_settings", lambda inventory, repo=None: None)
    assert cli.main(["-i", LAB, "apply"]) == 4
    assert "GAGAL: mail1: create the mailboxes" in capsys.readouterr().err


def test_a_wrong_lifecycle_date_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    inv = lab_copy(tmp_path, REPO / "lab" / "requests")
    result = sop_env("-i", str(inv), "names", env={"SOP_TODAY": "2026-02-30"})
    assert result.returncode == 2
    assert result.stderr == "sop: the lifecycle date '2026-02-30' is not a date (YYYY-MM-DD)\n"


def test_a_folder_that_is_no_inventory_is_refused_before_ansible_reads_it() -> None:
    result = sop_env("-i", ".", "validate", "lab/requests")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"sop: {REPO} is not an inventory: it has no hosts.yml and no group_vars/ "
        "(give its folder, e.g. -i inventory/lab)"]
    assert "WARNING" not in result.stderr


def test_a_reader_closing_the_output_early_gets_no_traceback(tmp_path: Path) -> None:
    inv = lab_copy(tmp_path, REPO / "lab" / "requests")
    proc = subprocess.Popen([str(SOP), "-i", str(inv), "names", "--format", "json"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "SOP_VAULT_PASSWORD": "uji"})
    proc.stdout.close()  # like `| head` that has had enough, before anything was written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert err == ""


def test_version() -> None:
    from importlib.metadata import version

    result = sop_env("--version")
    assert result.returncode == 0
    assert result.stdout == f"sop {version('sop-subdomain')}\n"
