"""`sop new`: a request file from flags or questions, written only when valid.

Flags are tested through the command itself (`sop.cli.main`, in-process),
questions through a real terminal (pexpect spawns `sop new` on a pty).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest
import yaml

from sop import scaffold, synth
from sop.cli import main
from sop.validate import validate_paths

REPO = Path(__file__).resolve().parents[2]
SOP = Path(sys.executable).parent / "sop"
LAB = str(REPO / "inventory" / "lab")

FLAGS = {
    "--subdomain": "dinsos",
    "--agency-name": "Dinas Sosial",
    "--abbreviation": "DINSOS",
    "--category": "instansi",
    "--contact-name": "Maria Ngongo",
    "--nip": "198501012010012001",
    "--phone": "+6281234567890",
    "--position": "Kepala Sub Bagian Umum",
    "--letter-number": "000.1/77/DINSOS/XI/2026",
    "--letter-date": "2026-11-02",
    "--subject": "Permohonan pembuatan subdomain dan email dinas",
    "--hosting-quota": "1G",
}


def argv(folder: Path, *extra: str, drop: tuple[str, ...] = (), **changes: str) -> list[str]:
    flags = {**FLAGS, **{"--" + k.replace("_", "-"): v for k, v in changes.items()}}
    out = ["-i", LAB, "new", "--no-input", "--output", str(folder)]
    for flag, value in flags.items():
        if flag not in drop:
            out += [flag, value]
    return out + list(extra)


def new(folder: Path, *extra: str, capsys, **options) -> tuple[int, str, str]:
    code = main(argv(folder, *extra, **options))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def contents(folder: Path) -> list[str]:
    """Everything in the folder, hidden names too (no leftover temporary files)."""
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "requests"
    path.mkdir()
    return path


def test_flags_write_a_valid_file(folder: Path, capsys) -> None:
    code, out, err = new(folder, "--mailbox", "admin:Maria Ngongo:1G",
                         "--mailbox", "kepala:dr. Yohanes Bili, M.Kes:512M",
                         "--alias", "info:admin,kepala", capsys=capsys)
    assert code == 0, err
    path = folder / "dinsos.yml"
    assert f"Written: {path}" in out
    assert contents(folder) == ["dinsos.yml"]
    requests, problems = validate_paths([folder])
    assert problems == []
    (req,) = requests
    assert req["contact"]["nip"] == "198501012010012001"  # stays text, not a number
    assert req["contact"]["phone"] == "+6281234567890"
    assert [b["holder"] for b in req["mail"]["mailboxes"]] == ["Maria Ngongo",
                                                               "dr. Yohanes Bili, M.Kes"]
    assert req["mail"]["aliases"][0]["to"] == ["admin@dinsos.sumbabaratdayakab.go.id",
                                               "kepala@dinsos.sumbabaratdayakab.go.id"]
    text = path.read_text()
    assert "date: 2026-11-02\n" in text  # a date, written as in the template
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    lint = subprocess.run([str(Path(sys.executable).parent / "yamllint"), "--strict", "-c",
                           str(REPO / ".yamllint"), str(path)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout


def test_database_flag_asks_for_a_database_and_needs_hosting(folder: Path, capsys) -> None:
    code, _, err = new(folder, "--database", "--mailbox", "admin:Maria Ngongo:1G",
                       capsys=capsys)
    assert code == 0, err
    assert "database: true" in (folder / "dinsos.yml").read_text()
    (req,), problems = validate_paths([folder])
    assert problems == [] and req["hosting"]["database"] is True
    code, _, err = new(folder, "--database", "--mailbox", "admin:Maria Ngongo:1G",
                       "--subdomain", "dinsos2", drop=("--hosting-quota",), capsys=capsys)
    assert code != 0
    assert "--database needs --hosting-quota" in err
    assert not (folder / "dinsos2.yml").exists()


def test_mail_only_event_on_the_parent_domain(folder: Path, capsys) -> None:
    code, _, err = new(folder, "--mailbox", "panitia.pasola:Yakobus Dairo:256M",
                       "--mail-domain", "parent", "--ends", "2027-03-31",
                       category="kegiatan", drop=("--hosting-quota",), capsys=capsys)
    assert code == 0, err
    doc = yaml.safe_load((folder / "dinsos.yml").read_text())
    assert "hosting" not in doc
    assert doc["agency"]["ends"].isoformat() == "2027-03-31"
    assert doc["mail"]["domain"] == "parent"


def test_missing_flags_are_each_named_and_nothing_is_written(folder: Path, capsys) -> None:
    code, out, err = new(folder, drop=("--nip", "--phone", "--letter-date", "--hosting-quota"),
                         capsys=capsys)
    assert code == 1 and out == ""
    for flag in ("--nip", "--phone", "--letter-date"):
        assert f"sop new: {flag} is missing:" in err
    assert "neither --hosting-quota nor --mailbox is given" in err
    assert "Nothing was written." in err
    assert contents(folder) == []


def test_wrong_values_are_each_explained_with_their_flag(folder: Path, capsys) -> None:
    code, _, err = new(folder, "--mailbox", "admin:X:3G", "--mailbox", "no-colons",
                       "--alias", "info:nobody",
                       nip="1985 0101", letter_date="2026-02-30", agency_name="Dinas <Sosial>",
                       hosting_quota="3", category="kegiatan", capsys=capsys)
    assert code == 1
    lines = err.splitlines()
    expected = [
        "sop new: --mailbox 'no-colons': write local_part:holder:quota",
        "sop new: --nip (contact.nip): must be exactly 18 digits",
        "sop new: --letter-date (letter.date): is not a real date",
        'sop new: --agency-name (agency.name): contains the character "<"',
        "sop new: --hosting-quota (hosting.quota): must be a positive whole size",
        "sop new: --ends (agency.ends): is required when the category is kegiatan",
        "sop new: --mailbox 'admin:X:3G' (mail.mailboxes[0].quota): is 3G; a mailbox may have "
        "at most 2G",
        "sop new: --alias 'info:nobody' (mail.aliases[0].to[0]): is not a mailbox",
    ]
    for start in expected:
        assert any(line.startswith(start) for line in lines), (start, err)
    assert lines[-1] == "Nothing was written."
    assert contents(folder) == []


def test_an_existing_file_is_never_overwritten(folder: Path, capsys) -> None:
    existing = folder / "dinsos.yml"
    existing.write_text("# someone's work in progress\n")
    code, _, err = new(folder, capsys=capsys)
    assert code == 1
    assert f"{existing} exists already" in err
    assert existing.read_text() == "# someone's work in progress\n"
    assert contents(folder) == ["dinsos.yml"]


def test_a_subdomain_taken_by_another_file_is_refused(folder: Path, capsys) -> None:
    taken = synth.request(0) | {"subdomain": "dinsos"}
    (folder / "dinsos.yaml").write_text(synth.render(taken))
    code, _, err = new(folder, capsys=capsys)
    assert code == 1
    assert "--subdomain (subdomain): is also requested by" in err and "dinsos.yaml" in err
    assert contents(folder) == ["dinsos.yaml"]


def test_a_parent_address_taken_by_another_request_is_refused(folder: Path, capsys) -> None:
    other = synth.request(12)  # uses the parent domain
    assert other["mail"]["domain"] == "parent"
    (folder / f"{other['subdomain']}.yml").write_text(synth.render(other))
    taken = other["mail"]["mailboxes"][0]["local_part"]
    code, _, err = new(folder, "--mail-domain", "parent", "--mailbox", f"{taken}:A B:1G",
                       capsys=capsys)
    assert code == 1
    assert f"--mailbox '{taken}:A B:1G' (mail.mailboxes[0].local_part): {taken}@" in err
    assert not (folder / "dinsos.yml").exists()


def test_a_file_appearing_meanwhile_is_not_overwritten(folder: Path, monkeypatch) -> None:
    # Another staff member writes the same file between the check and the write.
    real = scaffold.validate_paths

    def validate_then_race(*args, **kwargs):
        result = real(*args, **kwargs)
        (folder / "dinsos.yml").write_text("theirs\n")
        return result

    monkeypatch.setattr(scaffold, "validate_paths", validate_then_race)
    doc, wrong, _ = scaffold.from_flags(scaffold_args(folder))
    assert wrong == []
    with pytest.raises(scaffold.NotWritten, match="exists already"):
        scaffold.write_new(doc, folder, {}, scaffold.regency_today())
    assert (folder / "dinsos.yml").read_text() == "theirs\n"
    assert contents(folder) == ["dinsos.yml"]


def scaffold_args(folder: Path):
    import argparse

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    scaffold.add_parser(sub)
    return parser.parse_args(argv(folder)[2:])


def test_a_missing_output_folder_is_said(tmp_path: Path, capsys) -> None:
    code, _, err = new(tmp_path / "nowhere", capsys=capsys)
    assert code == 1 and "does not exist" in err
    assert not (tmp_path / "nowhere").exists()


def test_the_example_in_requests_readme_works(folder: Path, capsys) -> None:
    text = (REPO / "requests" / "README.md").read_text()
    example = re.search(r"^sop new (?:.*\\\n)*.*$", text, re.MULTILINE)
    assert example, "no sop new example in requests/README.md"
    words = shlex.split(example[0].replace("\\\n", " "))
    assert main(["-i", LAB, *words[1:], "--no-input", "--output", str(folder)]) == 0, \
        capsys.readouterr().err
    assert validate_paths([folder])[1] == []


@pytest.mark.parametrize(("text", "holder"), [("admin:Maria:Ngongo:1G", "Maria:Ngongo"),
                                              ("admin: Maria Ngongo :1G", "Maria Ngongo")])
def test_mailbox_flag_holder_may_hold_colons_and_spaces(text: str, holder: str) -> None:
    assert scaffold._mailbox_from_flag(text) == {"local_part": "admin", "holder": holder,
                                                 "quota": "1G"}


# --- Questions on a terminal ------------------------------------------------------------


def spawn(folder: Path, *args: str) -> pexpect.spawn:
    env = {**os.environ, "COLUMNS": "200"}
    return pexpect.spawn(str(SOP), ["-i", LAB, "new", "--output", str(folder), *args],
                         encoding="utf-8", timeout=30, env=env, dimensions=(50, 250))


def answer(child: pexpect.spawn, pairs: list[tuple[str, str | None]]) -> None:
    """Wait for each text; answer it (None: a message, nothing to answer)."""
    for prompt, reply in pairs:
        child.expect_exact(prompt)
        if reply is not None:
            child.sendline(reply)


def test_questions_explain_mistakes_and_write_a_valid_file(folder: Path) -> None:
    synth.generate(1, folder)  # dinas-0001 exists: its subdomain is taken
    child = spawn(folder, "--nip", "123")
    answer(child, [
        ("The letter's number", "000.1/9/DINSOS/XI/2026"),
        ("The letter's date", "2026-13-01"),
        ("letter.date is not a real date", None),
        ("The letter's date", "2026-11-02"),
        ("The letter's subject", "Permohonan subdomain"),
        ("The agency's official name", "Dinas Sosial"),
        ("abbreviation, in capital letters", "dinsos"),
        ("agency.abbreviation must be the official abbreviation in capital letters", None),
        ("abbreviation, in capital letters", "DINSOS"),
        ("The category", "kegiatan"),
        ("The last day of the event", "2026-11-01"),
        ("agency.ends must be after the letter's date (2026-11-02)", None),
        ("The last day of the event", "2027-01-31"),
        ("contact, who receives the handover", "Maria Ngongo"),
    ])
    # The NIP given as a flag is wrong: said, then asked for.
    child.expect_exact("--nip '123': contact.nip must be exactly 18 digits")
    answer(child, [
        ("The contact's NIP", "198501012010012001"),
        ("The contact's position", "Kepala Sub Bagian Umum"),
        ("The contact's phone number", "0812 3456 7890"),
        ("The subdomain, in lower case (e.g. dinkes) [dinsos]: ", "dinas-0001"),
        ("subdomain is also requested by", None),
        ("[dinsos]: ", ""),  # the suggestion from the abbreviation
        ("The name will be dinsos.sumbabaratdayakab.go.id", None),
        ("none for no web hosting", "500"),
        ("hosting.quota must be a positive whole size", None),
        ("none for no web hosting", "512M"),
        ("Does the site need a database", "perhaps"),
        ("Please answer yes or no.", None),
        ("Does the site need a database", "yes"),
        ("(parent); none for no email [subdomain]: ", ""),
        ("Mailbox 1: the part of the address before the @: ", "admin"),
        ("who uses the mailbox", "Maria Ngongo"),
        ("The mailbox's quota", "1G"),
        ("Mailbox 2: the part of the address before the @ (empty when done): ", "admin"),
        ("is already used by mail.mailboxes[0]", None),
        ("Mailbox 2: the part of the address before the @ (empty when done): ", ""),
        ("Alias 1: the part of the alias address before the @ (empty when done): ", "info"),
        ("Where mail to the alias goes", "admin, arsip@gmail.com"),
        ("Alias 2", ""),
    ])
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    requests, problems = validate_paths([folder])
    assert problems == []
    (req,) = [r for r in requests if r["subdomain"] == "dinsos"]
    assert req["agency"]["ends"] == "2027-01-31"
    assert req["hosting"]["quota"] == "512M"
    assert req["hosting"]["database"] is True
    assert req["mail"]["aliases"][0]["to"] == ["admin@dinsos.sumbabaratdayakab.go.id",
                                               "arsip@gmail.com"]


def test_stopping_the_questions_writes_nothing(folder: Path) -> None:
    child = spawn(folder)
    answer(child, [("The letter's number", "000.1/9/DINSOS/XI/2026")])
    child.expect_exact("The letter's date")
    child.sendeof()
    child.expect_exact("Cancelled; nothing was written.")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    assert contents(folder) == []
