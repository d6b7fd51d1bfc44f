"""The forge side of SOP steps 1-2: workflows, code owners, the pull-request template.

Every workflow under .github/workflows is checked by actionlint (with
shellcheck for the `run:` scripts), whoever adds it. The requests workflow,
CODEOWNERS, the template and the README's branch-protection section are
checked for what the approval process relies on.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
GITHUB = REPO / ".github"
WORKFLOWS = sorted([*GITHUB.glob("workflows/*.yml"), *GITHUB.glob("workflows/*.yaml")])
ACTIONLINT = Path(sys.executable).parent / "actionlint"


def actionlint(*files: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(ACTIONLINT), "-no-color", *map(str, files)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_actionlint_and_shellcheck_are_installed() -> None:
    result = subprocess.run([str(ACTIONLINT), "-version"], capture_output=True, text=True)
    assert result.returncode == 0 and "1.17.0" in result.stdout
    # Without shellcheck actionlint silently skips the `run:` scripts.
    assert shutil.which("shellcheck"), "shellcheck is missing: run ./scripts/bootstrap"


def test_every_workflow_passes_actionlint() -> None:
    assert WORKFLOWS, "no workflow found"
    result = actionlint(*WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("step", "finding"),
    [
        ("- run: echo ${{ github.event.pull_request.title }}", "potentially untrusted"),
        ("- run: echo $SUMMARY > $GITHUB_STEP_SUMMARY", "SC2086"),
        ("- uses: actions/checkout@v1", "update the action's version"),
    ],
    ids=["script-injection", "shellcheck", "old-action"],
)
def test_actionlint_really_checks(tmp_path: Path, step: str, finding: str) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("on: pull_request\njobs:\n  a:\n    runs-on: ubuntu-latest\n"
                   f"    steps:\n      {step}\n")
    result = actionlint(bad)
    assert result.returncode == 1 and finding in result.stdout, result.stdout


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load((GITHUB / "workflows" / "requests.yml").read_text())


def test_requests_workflow_runs_on_every_pull_request(workflow: dict) -> None:
    trigger = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert set(trigger) == {"pull_request"}
    # No path filter: a required check skipped by one would block other pull requests.
    assert "paths" not in trigger["pull_request"]
    assert "paths-ignore" not in trigger["pull_request"]
    assert {"opened", "synchronize", "labeled", "unlabeled"} <= set(
        trigger["pull_request"]["types"])


def test_requests_workflow_has_least_privilege(workflow: dict) -> None:
    assert workflow["permissions"] == {"contents": "read"}
    for job in workflow["jobs"].values():
        assert job.get("permissions") in (None, {"contents": "read"})
    text = (GITHUB / "workflows" / "requests.yml").read_text()
    assert "pull_request_target" not in text and "secrets." not in text


def test_requests_workflow_steps(workflow: dict) -> None:
    job = workflow["jobs"]["validate"]  # the check name branch protection requires
    steps = job["steps"]
    checkout = next(s for s in steps if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 0
    assert checkout["with"]["persist-credentials"] is False
    python = next(s for s in steps if s.get("uses", "").startswith("actions/setup-python@"))
    assert python["with"]["python-version"] == "3.11"
    runs = [s.get("run", "") for s in steps]
    assert "pip install -r requirements.txt && pip install --no-deps -e ." in runs
    assert "sop -i inventory/production validate requests/" in runs
    assert "yamllint --strict requests/" in runs
    plan = next(s for s in steps if "plan" in s.get("run", ""))
    assert plan["env"]["BASE_REF"] == "${{ github.base_ref }}"
    assert '--base "origin/${BASE_REF}" --format markdown' in plan["run"]
    assert '>> "${GITHUB_STEP_SUMMARY}"' in plan["run"]
    assert "sop:large-change" in plan["env"]["ALLOW_LARGE_CHANGE"]


def sop_command_lines(workflow: dict) -> list[list[str]]:
    """Every `sop` command of the workflow's `run:` scripts, as words; a bash
    array `args` built before it (`args=(...)`, then `args+=(...)`) is expanded
    as each of its states, so a conditional option is read too."""
    commands = []
    for job in workflow["jobs"].values():
        for step in job.get("steps", []):
            arrays: list[list[str]] = []
            for line in step.get("run", "").splitlines():
                line = line.strip()
                built = re.fullmatch(r"args\+?=\((.*)\)", line)
                if built:
                    arrays.append(shlex.split(built[1]))
                    continue
                if not line.startswith("sop "):
                    continue
                words = shlex.split(line)
                words = words[:words.index(">>")] if ">>" in words else words
                if "${args[@]}" not in words:
                    commands.append(words)
                    continue
                at = words.index("${args[@]}")
                assert arrays, line
                for upto in range(1, len(arrays) + 1):
                    expanded = [word for array in arrays[:upto] for word in array]
                    commands.append(words[:at] + expanded + words[at + 1:])
    return commands


def test_the_workflows_use_only_real_sop_options(workflow: dict) -> None:
    from sop.cli import build_parser

    parser = build_parser()
    commands = sop_command_lines(workflow)
    for path in WORKFLOWS:
        if path.name != "requests.yml":
            commands += sop_command_lines(yaml.safe_load(path.read_text()))
    # What the workflows are known to run: a workflow losing its sop step fails too.
    read = {" ".join(words[3:]) for words in commands}
    assert {"validate requests/", "plan --base origin/${BASE_REF} --format markdown",
            "plan --base origin/${BASE_REF} --format markdown --allow-large-change"} <= read, read
    # The Apply workflow's one step, scripts/controller-apply, builds its
    # command in a bash array: each state of it, with its variables filled in.
    script = (REPO / "scripts" / "controller-apply").read_text()
    arrays = [shlex.split(m) for m in re.findall(r"^\s*args\+?=\((.*)\)$", script, re.M)]
    assert arrays and '"$venv/bin/python" -m sop "${args[@]}"' in script
    fill = {"$PWD": str(REPO), "${SOP_APPLY_WAIT:-3600}": "3600"}
    applies = [["sop", *[fill.get(w, w) for a in arrays[:upto] for w in a]]
               for upto in range(1, len(arrays) + 1)]
    assert [" ".join(words[5:]) for words in applies] == ["apply --wait 3600",
                                                          "apply --wait 3600 --check"]
    for words in commands + [w[:1] + w[3:] for w in applies]:
        assert words[:3] == ["sop", "-i", "inventory/production"], words
        try:
            parser.parse_args(words[1:])
        except SystemExit:  # argparse refuses an unknown option or a bad value
            pytest.fail(f"sop refuses the workflow's command: {' '.join(words)}")


def test_codeowners_make_the_division_review_requests() -> None:
    rules = [line.split() for line in (GITHUB / "CODEOWNERS").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    owners = {rule[0]: rule[1:] for rule in rules}
    assert owners["/requests/"] == ["@diskominfo-sbd/layanan-egov"]
    assert owners["/.github/"] == ["@diskominfo-sbd/layanan-egov"]
    assert all(re.fullmatch(r"@[\w.-]+/[\w.-]+", o) for rule in owners.values() for o in rule)
    assert "PLACEHOLDER" in (GITHUB / "CODEOWNERS").read_text()


def test_pull_request_template_has_the_step_1_checklist() -> None:
    text = (GITHUB / "pull_request_template.md").read_text()
    boxes = re.findall(r"^- \[ \] (.+(?:\n {6}.+)*)", text, re.MULTILINE)
    joined = [" ".join(box.split()) for box in boxes]
    for words in ("addressed to the Regent (Bupati)", "head of the E-Government Services "
                  "Division gave the disposition", "contact (name, NIP, position, phone) was "
                  "verified", "quotas were checked against the plan"):
        assert any(words in box for box in joined), words


def test_readme_explains_the_branch_protection() -> None:
    text = (REPO / "README.md").read_text()
    approving = text[text.index("## Approving a request"):]
    approving = approving[:approving.find("\n## ", 3)]
    step = text[text.index("### 7. The runner and the workflows"):]
    section = approving + step[:step.find("\n### ", 3)]
    assert "branch protection" in approving
    for setting in ("Require a pull request before merging", "Require approvals",
                    "Require review from Code Owners", "Dismiss stale pull request approvals",
                    "Require status checks to pass", "Requests / validate",
                    "Restrict who can push", "placeholder", "sop:large-change", "sop new",
                    "sop plan"):
        assert setting in section, setting
