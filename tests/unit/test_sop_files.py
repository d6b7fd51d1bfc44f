"""The sop_files action and module: several templates written in one call.

Runs ansible-playbook on this machine against files under a temporary folder
(no daemon involved), with the project's ansible.cfg for the plugin paths.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

TEMPLATE = """# {{ ansible_managed }}
{% for name in names %}
{{ name }} OK
{% endfor %}
"""


def _play(tmp: Path, mode: str = "0640", extra: str = "") -> Path:
    role = tmp / "roles" / "tables" / "templates" / str(tmp).lstrip("/") / "out"
    role.mkdir(parents=True, exist_ok=True)
    (role / "a.j2").write_text(TEMPLATE)
    (role / "b.j2").write_text("fixed {{ names | length }}\n")
    tasks = tmp / "roles" / "tables" / "tasks"
    tasks.mkdir(parents=True, exist_ok=True)
    (tasks / "main.yml").write_text(f"""
- name: Write both tables
  sop_files:
    dest: ["{tmp}/out/a", "{tmp}/out/b"]
    owner: root
    group: root
    mode: "{mode}"
  register: written
- name: The same with the builtin, for comparison
  ansible.builtin.template:
    src: "{str(tmp).lstrip('/')}/out/a.j2"
    dest: "{tmp}/builtin-a"
    mode: "0644"
  check_mode: false
  diff: false
{extra}
""")
    play = tmp / "play.yml"
    play.write_text("- hosts: localhost\n  gather_facts: false\n  roles: [tables]\n")
    return play


def _run(play: Path, *args: str, names=("satu", "dua")) -> dict:
    """The run's rc, output and each task's result (from ansible-runner's events)."""
    import ansible_runner

    private = play.parent / f"runner-{len(list(play.parent.glob('runner-*')))}"
    private.mkdir()
    runner = ansible_runner.run(
        private_data_dir=str(private), playbook=str(play),
        inventory="localhost ansible_connection=local ansible_python_interpreter=/usr/bin/python3",
        envvars={"ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
                 "PATH": f"{BIN}:{os.environ['PATH']}"},
        extravars={"names": list(names)}, cmdline=" ".join(args) or None, quiet=True)
    results = {}
    for event in runner.events:
        data = event.get("event_data") or {}
        if event["event"] in ("runner_on_ok", "runner_on_failed"):
            results[data["task"]] = data["res"]
    return {"rc": runner.rc, "output": runner.stdout.read(), "results": results}


def _result(run: dict, task: str) -> dict:
    assert run["rc"] == 0, run["output"][-3000:]
    return run["results"][task]


@pytest.fixture
def tmp(tmp_path):
    if os.geteuid() != 0:
        pytest.fail("writes files owned by root: run as root")
    (tmp_path / "out").mkdir()
    return tmp_path


def test_writes_every_file_as_the_template_module_would(tmp):
    play = _play(tmp)
    first = _result(_run(play), "Write both tables")
    assert first["changed"] is True
    assert sorted(first["changed_files"]) == [f"{tmp}/out/a", f"{tmp}/out/b"]
    a = (tmp / "out" / "a").read_text()
    assert a == (tmp / "builtin-a").read_text()  # ansible_managed, trim_blocks alike
    assert a.splitlines()[1:] == ["satu OK", "dua OK"]
    assert (tmp / "out" / "b").read_text() == "fixed 2\n"
    st = (tmp / "out" / "a").stat()
    assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o640, 0, 0)
    # The contents never come back in the result (they may be large).
    assert "invocation" not in first


def test_a_second_run_changes_nothing_and_only_what_differs_is_written(tmp):
    play = _play(tmp)
    _result(_run(play), "Write both tables")
    b_inode = (tmp / "out" / "b").stat().st_ino
    again = _result(_run(play), "Write both tables")
    assert again["changed"] is False and again["changed_files"] == []
    third = _result(_run(play, names=("satu", "dua", "tiga")), "Write both tables")
    assert sorted(third["changed_files"]) == [f"{tmp}/out/a", f"{tmp}/out/b"]
    assert (tmp / "out" / "b").stat().st_ino != b_inode  # replaced, not edited in place
    assert not list((tmp / "out").glob(".sop_files.*"))


def test_mode_drift_is_put_right_without_rewriting(tmp):
    play = _play(tmp)
    _result(_run(play), "Write both tables")
    (tmp / "out" / "a").chmod(0o666)
    inode = (tmp / "out" / "a").stat().st_ino
    fixed = _result(_run(play), "Write both tables")
    assert fixed["changed_files"] == [f"{tmp}/out/a"]
    st = (tmp / "out" / "a").stat()
    assert st.st_mode & 0o777 == 0o640 and st.st_ino == inode


def test_check_mode_writes_nothing_and_diff_shows_the_change(tmp):
    play = _play(tmp)
    result = _result(_run(play, "--check", "--diff"), "Write both tables")
    assert result["changed"] is True
    assert not (tmp / "out" / "a").exists() and not (tmp / "out" / "b").exists()
    diffs = {d["after_header"]: d for d in result["diff"]}
    assert diffs[f"{tmp}/out/b"]["before"] == "" and diffs[f"{tmp}/out/b"]["after"] == "fixed 2\n"


def test_a_relative_destination_is_refused_before_anything_is_written(tmp):
    play = _play(tmp)
    text = (tmp / "roles" / "tables" / "tasks" / "main.yml").read_text()
    (tmp / "roles" / "tables" / "tasks" / "main.yml").write_text(
        text.replace(f'"{tmp}/out/b"', '"out/b"'))
    run = _run(play)
    assert run["rc"] != 0
    assert "'out/b' is not an absolute path" in run["results"]["Write both tables"]["msg"]
    assert not (tmp / "out" / "a").exists()


def test_a_file_may_name_its_template_and_mode_and_folders_are_made_first(tmp):
    play = _play(tmp)
    tasks = tmp / "roles" / "tables" / "tasks" / "main.yml"
    tasks.write_text(f"""
- name: Write into a folder made by the same call
  sop_files:
    directories: ["{tmp}/new", "{tmp}/new/deeper"]
    dest:
      - {{path: "{tmp}/new/deeper/tool", src: "{str(tmp).lstrip('/')}/out/b.j2", mode: "0755"}}
      - "{tmp}/out/a"
    owner: root
    group: root
    mode: "0600"
""")
    first = _result(_run(play), "Write into a folder made by the same call")
    assert first["changed_files"] == [f"{tmp}/new", f"{tmp}/new/deeper",
                                      f"{tmp}/new/deeper/tool", f"{tmp}/out/a"]
    modes = {p: (tmp / p).stat().st_mode & 0o777 for p in ("new", "new/deeper",
                                                         "new/deeper/tool", "out/a")}
    assert modes == {"new": 0o755, "new/deeper": 0o755, "new/deeper/tool": 0o755,
                     "out/a": 0o600}
    assert (tmp / "new" / "deeper" / "tool").read_text() == "fixed 2\n"
    (tmp / "new").chmod(0o700)
    again = _result(_run(play), "Write into a folder made by the same call")
    assert again["changed_files"] == [f"{tmp}/new"]
    assert (tmp / "new").stat().st_mode & 0o777 == 0o755


def test_a_folder_where_a_file_belongs_fails_with_its_name(tmp):
    play = _play(tmp)
    (tmp / "out" / "a").mkdir()
    run = _run(play)
    assert run["rc"] != 0
    assert f"cannot read {tmp}/out/a: Is a directory" in run["results"]["Write both tables"]["msg"]
    assert not (tmp / "out" / "b").exists()
