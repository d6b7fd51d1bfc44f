"""What is known of where each request came from (SOP steps 1 and 2).

In production a request file reaches the servers through a reviewed pull
request: the commit that last changed the file is the trace of its approval.
The lab runs example requests without any letter or disposition. Nothing
else is claimed: a file changed since its last commit, or a checkout
without git, is said to be so.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path


def _git(repo: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _last_commits(repo: Path, paths: set[str]) -> dict[str, dict]:
    """The latest commit of each path (short hash, commit date), from one ``git log``."""
    text = _git(repo, "log", "--no-renames", "--format=%x00%h %cs", "--name-only", "--",
                *sorted({str(Path(p).parent) for p in paths}))
    found: dict[str, dict] = {}
    for block in (text or "").split("\0")[1:]:
        head, _, names = block.partition("\n")
        commit, _, day = head.partition(" ")
        for name in names.split():
            if name in paths and name not in found:
                found[name] = {"commit": commit, "date": day}
    return found


def _changed(repo: Path, paths: set[str]) -> set[str]:
    """Paths untracked or changed since their last commit."""
    text = _git(repo, "status", "--porcelain", "--untracked-files=all", "--",
                *sorted({str(Path(p).parent) for p in paths}))
    return {line[3:].strip() for line in (text or "").splitlines()} & paths


def request_origins(repo: Path, requests: Iterable[Mapping], lab: bool = False) -> dict:
    """``{"lab": bool, "git": bool, "requests": {subdomain: origin}}``.

    An origin is ``{"commit", "date"}`` of the file's last commit, with
    ``"changed": True`` when the file differs from it (or is not committed:
    ``commit`` None).
    """
    top = _git(Path(repo), "rev-parse", "--show-toplevel")
    repo = Path(top.strip() if top else repo).resolve()
    by_label: dict[str, str] = {}
    for req in requests:
        path = Path(str(req.get("file") or ""))
        path = path if path.is_absolute() else repo / path
        try:
            by_label[str(req["subdomain"])] = str(path.resolve().relative_to(repo))
        except ValueError:  # outside the repository: no history to tell
            by_label[str(req["subdomain"])] = ""
    paths = {p for p in by_label.values() if p}
    is_git = bool(paths) and top is not None
    commits = _last_commits(repo, paths) if is_git else {}
    changed = _changed(repo, paths) if is_git else set()
    out = {}
    for label, path in sorted(by_label.items()):
        entry = {"commit": None, "date": None, **commits.get(path, {})}
        entry["changed"] = path in changed or entry["commit"] is None
        out[label] = entry
    return {"lab": lab, "git": is_git, "requests": out}
