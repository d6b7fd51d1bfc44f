"""`sop plan`: what merging a change of requests/ would do, compared with a base.

Every test builds its own git repository in tmp_path (synthetic requests
from sop.synth committed on main), changes the work tree, and plans: the
real repository is never touched. No root, no daemons.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sop import plan as plan_mod
from sop import synth
from sop.config import Settings
from sop.model import hosting_username
from sop.plan import PlanError, make_plan, render_markdown
from sop.validate import parse_size

REPO = Path(__file__).resolve().parents[2]
SOP = Path(sys.executable).parent / "sop"
ZONE = "sumbabaratdayakab.go.id"
GIB = 1 << 30


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True, env=env).stdout


def settings_for(repo: Path, **extra) -> Settings:
    """Settings as the lab inventory gives them, for a repository in tmp_path."""
    variables = {
        "sop_zone": ZONE,
        "sop_policy": {"reserved_labels": ["lab"], "max_mailbox_quota": "2G",
                       "max_hosting_quota": "5G", "max_agency_quota": "10G"},
        "sop_requests_dir": "requests",
        "sop_web_ipv4": "192.0.2.10",
        "sop_mail_hostname": f"mail.{ZONE}",
        "sop_mail_storage_path": "/var/mail/vhosts",
        "sop_web_storage_path": "/srv/www",
        "sop_storage_reserve_percent": 15,
        **extra,
    }
    return Settings(repo_root=repo, inventory=repo / "inventory", vars=variables)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository whose main branch holds 10 synthetic requests."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    synth.generate(10, root / "requests")
    (root / "requests" / "README.md").write_text("not a request\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "ten requests")
    return root


def requests_dir(repo: Path) -> Path:
    return repo / "requests"


def edit(repo: Path, label: str, change) -> dict:
    path = requests_dir(repo) / f"{label}.yml"
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(synth.render(doc))
    return doc


def planned(repo: Path, **options) -> dict:
    settings = options.pop("settings", None) or settings_for(repo)
    return make_plan(settings, requests_dir(repo), **options)


def labels(items: list[dict]) -> list[str]:
    return [item["subdomain"] for item in items]


# --- No change, additions, changes, removals ---------------------------------------


def test_no_change_plans_nothing(repo: Path) -> None:
    plan = planned(repo)
    assert plan["status"] == "ok"
    assert plan["base"]["ref"] == "main"
    assert plan["base"]["commit"] == git(repo, "rev-parse", "main").strip()
    assert plan["summary"] | {} == {
        "existing": 10, "added": 0, "changed": 0, "removed": 0, "unchanged": 10, "after": 10,
        "affected_percent": 0.0, "threshold_percent": 30.0, "large_change": False,
        "large_change_allowed": False}
    assert plan["dns"] == {"add": [], "remove": []}
    for key in ("mailboxes", "aliases", "vhosts", "hosting_accounts", "databases"):
        assert not any(plan[key].values()), key
    assert plan["quota"]["added_bytes"] == 0
    assert "merging changes nothing" in render_markdown(plan)


def test_an_added_request(repo: Path) -> None:
    new = synth.request(10)  # not yet in the repository
    label = new["subdomain"]
    (requests_dir(repo) / f"{label}.yml").write_text(synth.render(new))
    plan = planned(repo)
    assert plan["status"] == "ok"
    assert labels(plan["agencies"]["added"]) == [label]
    assert plan["agencies"]["changed"] == plan["agencies"]["removed"] == []
    assert plan["summary"]["affected_percent"] == 0.0  # additions are never "large"
    fqdn = f"{label}.{ZONE}"
    assert {(r["fqdn"], r["type"], r["value"]) for r in plan["dns"]["add"]} == {
        (fqdn, "A", "192.0.2.10"), (f"www.{fqdn}", "A", "192.0.2.10"),
        (fqdn, "MX", f"10 mail.{ZONE}."),
    }
    assert plan["dns"]["remove"] == []
    boxes = [b["local_part"] for b in new["mail"]["mailboxes"]]
    assert [m["address"] for m in plan["mailboxes"]["create"]] == sorted(
        f"{b}@{fqdn}" for b in boxes)
    assert [a["address"] for a in plan["aliases"]["create"]] == [
        f"{a['local_part']}@{fqdn}" for a in new["mail"].get("aliases", [])]
    assert [v["server_names"] for v in plan["vhosts"]["create"]] == [[fqdn, f"www.{fqdn}"]]
    assert [(h["username"], h["quota"]) for h in plan["hosting_accounts"]["create"]] == [
        (hosting_username(label), new["hosting"]["quota"])]
    expected = parse_size(new["hosting"]["quota"]) + sum(
        parse_size(b["quota"]) for b in new["mail"]["mailboxes"])
    assert plan["quota"]["added_bytes"] == expected == plan["agencies"]["added"][0][
        "quota_bytes"]
    text = render_markdown(plan)
    assert "## Agencies added" in text and f"### {fqdn}" in text
    assert "REMOVAL" not in text and "DELETE" not in text and "REFUSED" not in text
    assert f"| add | `www.{fqdn}` | A | `192.0.2.10` |" in text


def test_a_changed_request_lists_each_field(repo: Path) -> None:
    label = "dinas-0001"

    def change(doc: dict) -> None:
        doc["hosting"]["quota"] = "1G"  # was 256M
        doc["mail"]["mailboxes"][0]["holder"] = "Paulus Lende"
        doc["contact"]["phone"] = "0813-1111-2222"
        doc["mail"]["aliases"].append({"local_part": "halo", "to": ["admin"]})

    before = yaml.safe_load((requests_dir(repo) / f"{label}.yml").read_text())
    edit(repo, label, change)
    plan = planned(repo)
    (changed,) = plan["agencies"]["changed"]
    assert changed["subdomain"] == label
    assert changed["changes"] == [
        {"field": "contact.phone", "before": before["contact"]["phone"],
         "after": "0813-1111-2222"},
        {"field": "hosting.quota", "before": "256M", "after": "1G"},
        {"field": "mail.aliases[halo].to", "before": None, "after": f"admin@{label}.{ZONE}"},
        {"field": "mail.mailboxes[admin].holder", "before": before["mail"]["mailboxes"][0][
            "holder"], "after": "Paulus Lende"},
    ]
    assert plan["summary"]["changed"] == 1 and plan["summary"]["affected_percent"] == 10.0
    (account,) = plan["hosting_accounts"]["change"]
    assert (account["before"]["quota"], account["quota"]) == ("256M", "1G")
    (box,) = plan["mailboxes"]["change"]
    assert (box["before"]["holder"], box["holder"]) == (before["mail"]["mailboxes"][0][
        "holder"], "Paulus Lende")
    assert [a["address"] for a in plan["aliases"]["create"]] == [f"halo@{label}.{ZONE}"]
    assert plan["dns"] == {"add": [], "remove": []}
    assert plan["quota"]["added_bytes"] == GIB - (256 << 20)
    assert plan["quota"]["by_kind"]["web"]["added_bytes"] == GIB - (256 << 20)
    text = render_markdown(plan)
    assert "| `hosting.quota` | 256M | 1G |" in text
    assert "| change | `w-dinas-0001` | dinas-0001 | 256M → 1G |" in text


def test_a_database_asked_for_then_given_up(repo: Path) -> None:
    label = "dinas-0001"
    edit(repo, label, lambda doc: doc["hosting"].update(database=True))
    plan = planned(repo)
    assert plan["databases"] == {"create": [{"database": "w_dinas_0001", "subdomain": label}],
                                 "delete": []}
    (changed,) = plan["agencies"]["changed"]
    assert changed["changes"] == [{"field": "hosting.database", "before": None, "after": True}]
    assert "| create | `w_dinas_0001` | dinas-0001 |" in render_markdown(plan)
    git(repo, "commit", "-qam", "database")
    edit(repo, label, lambda doc: doc["hosting"].pop("database"))
    plan = planned(repo)
    assert plan["databases"]["delete"] == [{"database": "w_dinas_0001", "subdomain": label}]
    text = render_markdown(plan)
    assert "| **REMOVE** | `w_dinas_0001` | dinas-0001 |" in text
    assert "**DELETION:** 1 database would be deleted" in text


def test_a_removed_request_is_flagged_loudly(repo: Path) -> None:
    label = "kec-0003"
    removed = yaml.safe_load((requests_dir(repo) / f"{label}.yml").read_text())
    (requests_dir(repo) / f"{label}.yml").unlink()
    plan = planned(repo)
    assert plan["status"] == "ok"  # 1 of 10 is under the 30% guard
    assert labels(plan["agencies"]["removed"]) == [label]
    fqdn = f"{label}.{ZONE}"
    assert {r["fqdn"] for r in plan["dns"]["remove"]} >= {fqdn}
    assert [m["address"] for m in plan["mailboxes"]["delete"]] == sorted(
        f"{b['local_part']}@{fqdn}" for b in removed["mail"]["mailboxes"])
    assert labels(plan["vhosts"]["delete"]) == ([label] if "hosting" in removed else [])
    assert plan["quota"]["added_bytes"] < 0
    text = render_markdown(plan)
    assert "> [!WARNING]" in text and "**REMOVAL: 1 agency would be removed:** **kec-0003**" \
        in text
    assert f"| **REMOVE** | `{fqdn}` |" in text
    assert "| **DELETE** |" in text
    assert "## Agencies removed" in text


def test_changing_the_mail_domain_moves_every_address(repo: Path) -> None:
    doc = edit(repo, "badan-0002", lambda d: d["mail"].__setitem__("domain", "parent")
               or [b.__setitem__("local_part", b["local_part"] + ".badan")
                   for b in d["mail"]["mailboxes"]])
    plan = planned(repo)
    new = {f"{b['local_part']}@{ZONE}" for b in doc["mail"]["mailboxes"]}
    assert {m["address"] for m in plan["mailboxes"]["create"]} == new
    assert all(m["address"].endswith(f"@badan-0002.{ZONE}") for m in plan["mailboxes"]["delete"])
    assert ("@", "MX") in {(r["name"], r["type"]) for r in plan["dns"]["add"]}
    assert ("badan-0002", "MX") in {(r["name"], r["type"]) for r in plan["dns"]["remove"]}


# --- The large-change guard ----------------------------------------------------------------


def remove(repo: Path, *names: str) -> None:
    for name in names:
        (requests_dir(repo) / f"{name}.yml").unlink()


def test_more_than_the_threshold_is_refused(repo: Path) -> None:
    remove(repo, "dinas-0001", "badan-0002", "kec-0003")
    edit(repo, "desa-0004", lambda d: d["agency"].__setitem__("name", "Desa Baru"))
    plan = planned(repo)
    assert plan["status"] == "refused"
    assert plan["summary"]["affected_percent"] == 40.0
    assert plan["summary"]["large_change"] is True
    text = render_markdown(plan)
    assert "> [!CAUTION]" in text and "**REFUSED: large change.** 4 of 10" in text
    assert "sop:large-change" in text

    allowed = planned(repo, allow_large_change=True)
    assert allowed["status"] == "ok"
    assert allowed["summary"]["large_change_allowed"] is True
    assert "Large change, allowed explicitly" in render_markdown(allowed)


def test_exactly_the_threshold_is_allowed(repo: Path) -> None:
    remove(repo, "dinas-0001", "badan-0002", "kec-0003")
    plan = planned(repo)
    assert plan["summary"]["affected_percent"] == 30.0
    assert plan["status"] == "ok" and plan["summary"]["large_change"] is False


def test_the_threshold_comes_from_the_inventory(repo: Path) -> None:
    remove(repo, "dinas-0001", "badan-0002", "kec-0003", "desa-0004")
    loose = settings_for(repo, sop_plan_change_threshold_percent=50)
    assert planned(repo, settings=loose)["status"] == "ok"
    strict = settings_for(repo, sop_plan_change_threshold_percent="5")
    remove(repo, "puskesmas-0005")
    assert planned(repo, settings=strict)["status"] == "refused"


@pytest.mark.parametrize("value", [-1, 101, "lots", True, None])
def test_a_bad_threshold_is_a_configuration_error(repo: Path, value) -> None:
    with pytest.raises(PlanError, match="sop_plan_change_threshold_percent"):
        planned(repo, settings=settings_for(repo, sop_plan_change_threshold_percent=value))


def test_removing_the_whole_folder_is_refused(repo: Path) -> None:
    shutil.rmtree(requests_dir(repo))
    plan = planned(repo)
    assert plan["status"] == "refused"
    assert plan["summary"]["removed"] == 10 and plan["summary"]["after"] == 0


def test_the_first_requests_ever_are_all_additions(tmp_path: Path) -> None:
    root = tmp_path / "fresh"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "README.md").write_text("empty\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "no requests yet")
    synth.generate(3, root / "requests")
    plan = planned(root)
    assert plan["status"] == "ok"
    assert plan["summary"]["existing"] == 0 and plan["summary"]["added"] == 3


# --- Invalid input, bases and the work tree -----------------------------------------------


def test_an_invalid_request_set_gives_problems_and_no_plan(repo: Path) -> None:
    edit(repo, "dinas-0001", lambda d: d["contact"].__setitem__("nip", "123"))
    (requests_dir(repo) / "rusak.yml").write_text("letter: [\n")
    plan = planned(repo)
    assert plan["status"] == "invalid"
    assert "agencies" not in plan and "dns" not in plan
    fields = [(Path(p["file"]).name, p["field"], p["line"]) for p in plan["problems"]]
    assert ("dinas-0001.yml", "contact.nip", 11) in fields
    assert any(name == "rusak.yml" for name, _, _ in fields)
    text = render_markdown(plan)
    assert "# Plan: cannot be made" in text and "contact.nip: must be exactly 18 digits" in text


def test_base_files_that_fail_today_are_reported_not_fatal(repo: Path) -> None:
    # The base holds a broken file, a link and an oversized file: the plan still works,
    # and the pull request that fixes or removes them shows them as changed/removed.
    folder = requests_dir(repo)
    (folder / "rusak.yml").write_text("letter: [\n")
    (folder / "tautan.yml").symlink_to("/etc/passwd")
    (folder / "besar.yml").write_text("#" * (70 * 1024))
    (folder / ".tersembunyi.yml").write_text("letter: [\n")  # not a request: skipped
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "bad files")
    for name in ("rusak.yml", "tautan.yml", "besar.yml"):
        (folder / name).unlink()
    plan = planned(repo, allow_large_change=True)
    assert plan["status"] == "ok"
    messages = {Path(p["file"]).name: p["message"] for p in plan["base_problems"]}
    assert set(messages) == {"rusak.yml", "tautan.yml", "besar.yml"}
    assert "symbolic link" in messages["tautan.yml"] and "64 KiB" in messages["besar.yml"]
    assert all(p["file"].startswith("main:requests/") for p in plan["base_problems"])
    assert sorted(labels(plan["agencies"]["removed"])) == ["besar", "rusak", "tautan"]
    assert "## Problems of the base" in render_markdown(plan)


def test_an_unknown_base_is_a_clear_error(repo: Path) -> None:
    with pytest.raises(PlanError, match="not a commit"):
        planned(repo, base="no-such-branch")
    with pytest.raises(PlanError, match="not a git revision"):
        planned(repo, base="--output=/tmp/x")


def test_default_base_falls_back_to_origin_main(repo: Path, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    git(clone, "checkout", "-q", "-b", "request/dinsos")
    git(clone, "branch", "-q", "-D", "main")
    plan = planned(clone)
    assert plan["base"]["ref"] == "origin/main"


def test_the_work_tree_is_left_as_it_was(repo: Path) -> None:
    edit(repo, "dinas-0001", lambda d: d["hosting"].__setitem__("quota", "1G"))
    (requests_dir(repo) / "new.yml").write_text("draft\n")
    before = git(repo, "status", "--porcelain", "--ignored")
    files = sorted(p.name for p in requests_dir(repo).iterdir())
    planned(repo)
    assert git(repo, "status", "--porcelain", "--ignored") == before
    assert sorted(p.name for p in requests_dir(repo).iterdir()) == files


def test_a_folder_outside_the_repository_is_refused(repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    synth.generate(1, outside)
    with pytest.raises(PlanError):
        make_plan(settings_for(repo), outside)


# --- Storage --------------------------------------------------------------------------------


def record(folder: Path, name: str, mounts: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps({"mounts": mounts}))
    return path


def mount(**values) -> dict:
    base = {"host": "lab", "mount": "/", "paths": ["/var/mail/vhosts", "/srv/www"],
            "capacity_bytes": 100 * GIB, "free_bytes": 60 * GIB,
            "allocated_bytes": 10 * GIB, "used_bytes": 2 * GIB}
    return base | values


def test_no_records_dir_means_no_storage_record_yet(repo: Path) -> None:
    storage = planned(repo)["storage"]
    assert storage["mounts"] == [] and storage["record"] is None
    assert "no storage record yet" in storage["note"]
    assert "no storage record yet" in render_markdown(planned(repo))


def test_headroom_comes_from_the_newest_storage_record(repo: Path) -> None:
    records = repo / "records"
    record(records / "storage", "2026-11-01T00-00-00.json", [mount(free_bytes=1)])
    newest = record(records / "storage", "2026-11-29T00-00-00.json", [mount()])
    new = synth.request(10)
    (requests_dir(repo) / f"{new['subdomain']}.yml").write_text(synth.render(new))
    settings = settings_for(repo, sop_records_dir="records")
    plan = planned(repo, settings=settings)
    storage = plan["storage"]
    assert storage["record"] == str(newest)
    (m,) = storage["mounts"]
    after = plan["quota"]["after_bytes"]
    assert m["quota_bytes_after"] == after
    assert m["reserve_bytes"] == 15 * GIB
    assert m["headroom_bytes_after"] == 60 * GIB - max(after - 2 * GIB, 0) - 15 * GIB
    assert m["fits"] is True
    text = render_markdown(plan)
    assert "2026-11-29T00-00-00.json" in text and "| lab | `/` | 100G |" in text


def test_a_shortage_is_flagged(repo: Path) -> None:
    record(repo / "records" / "storage", "1.json",
           [mount(free_bytes=16 * GIB, capacity_bytes=100 * GIB, used_bytes=0)])
    new = synth.request(10)
    (requests_dir(repo) / f"{new['subdomain']}.yml").write_text(synth.render(new))
    plan = planned(repo, settings=settings_for(repo, sop_records_dir="records"))
    (m,) = plan["storage"]["mounts"]
    assert m["fits"] is False
    text = render_markdown(plan)
    assert "**STORAGE: not enough space.**" in text and "SHORT: the run would stop" in text


def test_split_mounts_count_only_their_own_paths(repo: Path) -> None:
    record(repo / "records" / "storage", "1.json", [
        mount(host="mail1", mount="/var/mail", paths=["/var/mail/vhosts"]),
        mount(host="web1", mount="/srv", paths=["/srv/www"]),
        mount(host="web1", mount="/boot", paths=["/boot"]),
    ])
    plan = planned(repo, settings=settings_for(repo, sop_records_dir="records"))
    by_host = {m["host"]: m["quota_bytes_after"] for m in plan["storage"]["mounts"]}
    assert by_host == {"mail1": plan["quota"]["by_kind"]["mail"]["after_bytes"],
                       "web1": plan["quota"]["by_kind"]["web"]["after_bytes"]}


@pytest.mark.parametrize("content", ["{not json", '{"disks": []}', '{"mounts": [{"paths": []}]}',
                                     '{"mounts": [{"host": "a", "mount": "/", "paths": [],'
                                     ' "capacity_bytes": "big", "free_bytes": 1,'
                                     ' "used_bytes": 1}]}'])
def test_an_unreadable_storage_record_is_said_not_fatal(repo: Path, content: str) -> None:
    folder = repo / "records" / "storage"
    folder.mkdir(parents=True)
    (folder / "1.json").write_text(content)
    plan = planned(repo, settings=settings_for(repo, sop_records_dir="records"))
    assert plan["status"] == "ok"
    assert "cannot be read" in plan["storage"]["note"]


# --- JSON and the command line ----------------------------------------------------------------


def run_sop(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(SOP), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_json_shape(repo: Path) -> None:
    new = synth.request(10)
    (requests_dir(repo) / f"{new['subdomain']}.yml").write_text(synth.render(new))
    result = run_sop("-i", str(REPO / "inventory/lab"), "plan", "--format", "json",
                     str(requests_dir(repo)), cwd=repo)
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert set(plan) == {"zone", "folder", "status", "base", "summary", "agencies", "dns",
                         "mailboxes", "aliases", "vhosts", "hosting_accounts", "databases",
                         "quota", "storage", "base_problems"}
    assert set(plan["agencies"]) == {"added", "changed", "removed"}
    assert set(plan["dns"]) == {"add", "remove"}
    assert set(plan["mailboxes"]) == set(plan["hosting_accounts"]) == {"create", "delete",
                                                                       "change"}
    assert set(plan["vhosts"]) == {"create", "delete"}
    assert set(plan["quota"]) == {"before_bytes", "after_bytes", "added_bytes", "by_kind"}
    assert all(isinstance(plan["quota"][k], int) for k in ("before_bytes", "after_bytes"))
    assert plan["dns"]["add"][0].keys() == {"name", "fqdn", "type", "value"}
    assert plan["dns"]["add"][0]["value"] == "127.0.0.1"  # the lab inventory's address


def test_the_command_as_the_pull_request_check_runs_it(repo: Path, tmp_path: Path) -> None:
    """Like CI: a clone, a branch, `--base origin/main`, the production inventory."""
    clone = tmp_path / "pr"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    git(clone, "checkout", "-q", "-b", "request/new")
    new = synth.request(10)
    (requests_dir(clone) / f"{new['subdomain']}.yml").write_text(synth.render(new))
    inventory = str(REPO / "inventory/production")
    checked = run_sop("-i", inventory, "validate", "requests/", cwd=clone)
    assert checked.returncode == 0, checked.stderr
    result = run_sop("-i", inventory, "plan", "--base", "origin/main", "--format", "markdown",
                     str(requests_dir(clone)), cwd=clone)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("# Plan: what merging this change would do")
    assert "Compared with `origin/main`" in result.stdout
    assert "`192.0.2.80`" in result.stdout  # production's (placeholder) web address
    assert "Traceback" not in result.stderr


def test_exit_codes(repo: Path) -> None:
    lab = str(REPO / "inventory/lab")
    folder = str(requests_dir(repo))
    remove(repo, "dinas-0001", "badan-0002", "kec-0003", "desa-0004")
    refused = run_sop("-i", lab, "plan", folder, cwd=repo)
    assert refused.returncode == 3
    assert "refused" in refused.stderr and "--allow-large-change" in refused.stderr
    assert "**REFUSED: large change.**" in refused.stdout  # the approver still sees the plan
    assert run_sop("-i", lab, "plan", "--allow-large-change", folder, cwd=repo).returncode == 0

    (requests_dir(repo) / "rusak.yml").write_text("letter: [\n")
    invalid = run_sop("-i", lab, "plan", folder, cwd=repo)
    assert invalid.returncode == 1
    assert "rusak.yml:2: is not valid YAML" in invalid.stderr
    assert "Traceback" not in invalid.stderr

    (requests_dir(repo) / "rusak.yml").unlink()
    missing = run_sop("-i", lab, "plan", "--base", "nowhere", folder, cwd=repo)
    assert missing.returncode == 2 and "sop: the base nowhere is not a commit" in missing.stderr


def test_many_requests_plan(tmp_path: Path) -> None:
    root = tmp_path / "big"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    synth.generate(500, root / "requests")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "500 requests")
    (root / "requests" / "dinas-0001.yml").unlink()
    plan = planned(root)  # its speed is scripts/bench's business
    assert plan["summary"]["existing"] == 500 and plan["summary"]["removed"] == 1
    assert labels(plan["agencies"]["removed"]) == ["dinas-0001"]
    assert len(render_markdown(plan)) < 1 << 20  # a job summary holds at most 1 MiB


def test_markdown_escapes_what_could_break_a_table() -> None:
    assert plan_mod._md("a|b*c_d`e<f>") == r"a\|b\*c\_d\`e\<f\>"
    assert plan_mod._md(None) == "—"
    assert plan_mod._fenced(["x ``` y"])[0] == "````"


def test_a_folder_name_with_spaces_and_a_wildcard(tmp_path: Path) -> None:
    root = tmp_path / "odd"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    folder = root / "permohonan *"
    synth.generate(4, folder)
    synth.generate(4, root / "permohonan x")  # a sibling that the name read as a glob matches
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "two folders")
    (folder / "dinas-0001.yml").unlink()
    plan = make_plan(settings_for(root), folder)
    assert plan["summary"]["existing"] == 4 and labels(plan["agencies"]["removed"]) == [
        "dinas-0001"]


def test_a_new_mailbox_position_shows_as_a_change(repo: Path) -> None:
    edit(repo, "kec-0003", lambda d: d["mail"]["mailboxes"][1].__setitem__(
        "position", "Sekretaris Camat"))
    (changed,) = planned(repo)["agencies"]["changed"]
    assert changed["changes"] == [{"field": "mail.mailboxes[kepala].position", "before": None,
                                   "after": "Sekretaris Camat"}]
