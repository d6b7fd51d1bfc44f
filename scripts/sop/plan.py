"""`sop plan`: what merging a change of the request files would do (the approver's view).

The request files of the working tree (the pull request's result) are
compared with the same folder at a base revision (default: the main branch).
Both sets go through the one validator (:func:`sop.validate.validate_paths`)
and the one desired-state code (:mod:`sop.model`), so the plan shows exactly
what `sop apply` would make of them: agencies added, changed and removed;
DNS records; mailboxes, aliases, websites, hosting accounts and databases to
create or delete; the quota added and the storage headroom it leaves according to the
latest storage record.

The base is read with git plumbing (``git ls-tree``, ``git cat-file``), argv
lists only: nothing is checked out and the working tree is not touched.

Exit codes: 0 plan made; 1 the request files have problems (listed);
2 the plan cannot be made (inventory, git); 3 refused: the change removes or
alters more than ``sop_plan_change_threshold_percent`` (default 30) percent of
the existing agencies and ``--allow-large-change`` was not given.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from . import exits, model
from .config import ConfigError, Settings, load_settings
from .validate import (
    MAX_FILE_BYTES,
    REQUEST_SUFFIXES,
    Problem,
    format_size,
    parse_size,
    regency_today,
    validate_paths,
)

EXIT_OK, EXIT_INVALID, EXIT_REFUSED = exits.OK, exits.INVALID, exits.REFUSED
DEFAULT_BASES = ("main", "origin/main")
DEFAULT_THRESHOLD_PERCENT = 30
# Longer tables are cut in the Markdown (the JSON always has everything).
MAX_TABLE_ROWS = 300


class PlanError(ConfigError):
    """The plan cannot be made (git, inventory); plain words. `sop` exits 2."""


# --- Reading the base from git ----------------------------------------------------


def _git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
    try:
        result = subprocess.run(["git", "--literal-pathspecs", "-C", str(repo), *args],
                                input=stdin,
                                capture_output=True, check=False, timeout=120)
    except FileNotFoundError as exc:
        raise PlanError("git is not installed; `sop plan` needs it to read the base") from exc
    if result.returncode != 0:
        detail = result.stderr.decode(errors="replace").strip().splitlines()
        raise PlanError(f"git {args[0]} failed: {detail[-1] if detail else result.returncode}")
    return result.stdout


def _repository(folder: Path) -> tuple[Path, str]:
    """The git work tree holding ``folder`` (which may not exist) and its path inside it."""
    existing = folder.absolute()
    while not existing.is_dir():
        existing = existing.parent
    top = Path(_git(existing, "rev-parse", "--show-toplevel").decode().strip())
    inside = os.path.relpath(os.path.realpath(folder), os.path.realpath(top))
    if inside == ".." or inside.startswith("../"):
        raise PlanError(f"{folder} is not inside the git work tree {top}")
    return top, "" if inside == "." else Path(inside).as_posix()


def resolve_base(repo: Path, base: str | None) -> tuple[str, str]:
    """The base's name and commit id: ``base``, or the first of main, origin/main."""
    if base is not None and (not base or base.startswith("-")):
        raise PlanError(f"{base!r} is not a git revision")
    for name in [base] if base else DEFAULT_BASES:
        found = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", "--end-of-options",
             f"{name}^{{commit}}"], capture_output=True, check=False, timeout=60)
        if found.returncode == 0:
            return name, found.stdout.decode().strip()
    wanted = base or " or ".join(DEFAULT_BASES)
    raise PlanError(f"the base {wanted} is not a commit of {repo}; fetch it first "
                    "(git fetch origin main), or name one with --base")


_TREE_LINE = re.compile(rb"(\d+) (\w+) ([0-9a-f]+) +(-|\d+)\t(.*)", re.DOTALL)


def read_base(repo: Path, commit: str, inside: str, into: Path) -> list[str]:
    """Write the request files of ``inside`` at ``commit`` into the folder ``into``.

    Only the files the validator would read in that folder are written: names
    ending in .yml or .yaml, not starting with a dot, directly in the folder.
    A symbolic link becomes a link (which the validator refuses, as it would
    in a work tree); a file over the size limit is not read, only sized.
    Returns the names written.
    """
    spec = f"{inside}/" if inside else "."
    listing = _git(repo, "ls-tree", "-z", "-l", "--full-tree", commit, "--", spec)
    wanted: list[tuple[str, str, str, int]] = []  # name, mode, object, size
    for entry in listing.split(b"\0"):
        match = _TREE_LINE.fullmatch(entry)
        if not match or match[2] != b"blob":
            continue
        name = os.fsdecode(match[5].rsplit(b"/", 1)[-1])
        if name.startswith(".") or not name.endswith(REQUEST_SUFFIXES):
            continue
        size = int(match[4]) if match[4] != b"-" else 0
        wanted.append((name, match[1].decode(), match[3].decode(), size))
    readable = [(name, oid) for name, mode, oid, size in wanted
                if mode != "120000" and size <= MAX_FILE_BYTES]
    blobs = _cat_blobs(repo, [oid for _, oid in readable])
    for name, mode, oid, size in wanted:
        path = into / name
        if mode == "120000":
            path.symlink_to(os.devnull)
        elif size > MAX_FILE_BYTES:
            with path.open("wb") as stream:
                stream.truncate(size)
        else:
            path.write_bytes(blobs[oid])
    return [name for name, *_ in wanted]


def _cat_blobs(repo: Path, oids: list[str]) -> dict[str, bytes]:
    """Contents of blobs, read by one ``git cat-file --batch``."""
    if not oids:
        return {}
    out = _git(repo, "cat-file", "--batch", stdin="".join(f"{o}\n" for o in oids).encode())
    blobs: dict[str, bytes] = {}
    pos = 0
    for oid in oids:
        end = out.index(b"\n", pos)
        header = out[pos:end].split()
        if len(header) != 3:
            raise PlanError(f"git cat-file could not read {oid}")
        size = int(header[2])
        blobs[oid] = out[end + 1:end + 1 + size]
        pos = end + 1 + size + 1
    return blobs


# --- Comparing two sets ---------------------------------------------------------


def _flat(req: Mapping[str, Any]) -> dict[str, str]:
    """The fields of a normalized request that an approver cares about, as text."""
    flat = {f"{group}.{key}": value for group in ("letter", "agency", "contact")
            for key, value in req[group].items() if value is not None}
    flat["status"] = req.get("status", "active")
    # Every field of hosting and mailboxes (fields added later show up too),
    # but not what is derived from them.
    for key, value in (req.get("hosting") or {}).items():
        if key != "quota_bytes" and value is not None:
            flat[f"hosting.{key}"] = value
    mail = req.get("mail")
    if mail:
        flat["mail.domain"] = mail["domain"]
        for box in mail["mailboxes"]:
            where = f"mail.mailboxes[{box['local_part']}]"
            for key, value in box.items():
                if key not in ("local_part", "address", "quota_bytes") and value is not None:
                    flat[f"{where}.{key}"] = value
        for alias in mail["aliases"]:
            flat[f"mail.aliases[{alias['local_part']}].to"] = ", ".join(alias["to"])
    return flat


def _field_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[dict]:
    old, new = _flat(before), _flat(after)
    return [{"field": key, "before": old.get(key), "after": new.get(key)}
            for key in sorted(old.keys() | new.keys(), key=_field_order)
            if old.get(key) != new.get(key)]


_GROUP_ORDER = ["letter", "agency", "contact", "status", "hosting", "mail"]


def _field_order(key: str) -> tuple[int, str]:
    group = key.split(".", 1)[0]
    return (_GROUP_ORDER.index(group) if group in _GROUP_ORDER else len(_GROUP_ORDER), key)


def _agency(req: Mapping[str, Any]) -> dict:
    """Summary of one agency for the lists."""
    mail = req.get("mail")
    return {
        "subdomain": req["subdomain"],
        "fqdn": req["fqdn"],
        "name": req["agency"]["name"],
        "abbreviation": req["agency"]["abbreviation"],
        "category": req["agency"]["category"],
        "ends": req["agency"].get("ends"),
        "letter": dict(req["letter"]),
        "contact": dict(req["contact"]),
        "hosting_quota": req["hosting"]["quota"] if req.get("hosting") else None,
        "database": model.wants_database(req),
        "mail_domain": mail["address_domain"] if mail else None,
        "mailboxes": len(mail["mailboxes"]) if mail else 0,
        "aliases": len(mail["aliases"]) if mail else 0,
        "quota_bytes": req["quota_bytes_total"],
    }


def _sized(item: dict, quota: str) -> dict:
    return {**item, "quota": quota, "quota_bytes": parse_size(quota)}


def _mailboxes(requests: Iterable[Mapping]) -> dict[str, dict]:
    return {box["address"]: _sized({"address": box["address"], "subdomain": req["subdomain"],
                                    "holder": box["holder"]}, box["quota"])
            for req in requests for box in (req.get("mail") or {}).get("mailboxes", [])}


def _aliases(requests: Iterable[Mapping]) -> dict[str, dict]:
    return {alias["address"]: {"address": alias["address"], "subdomain": req["subdomain"],
                               "to": list(alias["to"])}
            for req in requests for alias in (req.get("mail") or {}).get("aliases", [])}


def _sites(requests: Iterable[Mapping], web_root: str) -> dict[str, dict]:
    return {site["name"]: {"subdomain": site["name"], "server_names": site["server_names"],
                           "root": site["root"]}
            for site in model.vhosts(requests, {"web_root": web_root})}


def _hosting(requests: Iterable[Mapping]) -> dict[str, dict]:
    return {model.hosting_username(req["subdomain"]):
            _sized({"username": model.hosting_username(req["subdomain"]),
                    "subdomain": req["subdomain"]}, req["hosting"]["quota"])
            for req in requests if req.get("hosting")}


def _databases(requests: Iterable[Mapping]) -> dict[str, dict]:
    return {model.database_name(req["subdomain"]):
            {"database": model.database_name(req["subdomain"]), "subdomain": req["subdomain"]}
            for req in requests if model.wants_database(req)}


def _compare(before: dict[str, dict], after: dict[str, dict],
             same: Iterable[str] = ()) -> dict[str, list]:
    """Create / delete / change lists of two keyed collections."""
    keys = list(same)
    out: dict[str, list] = {
        "create": [after[k] for k in sorted(after.keys() - before.keys())],
        "delete": [before[k] for k in sorted(before.keys() - after.keys())],
    }
    if keys:
        out["change"] = [
            {**after[k], "before": {f: before[k][f] for f in keys}}
            for k in sorted(after.keys() & before.keys())
            if any(before[k][f] != after[k][f] for f in keys)
        ]
    return out


def _dns(before: list[Mapping], after: list[Mapping], settings: Settings) -> dict[str, list]:
    zone_settings = {"zone": settings.zone, "web_ipv4": settings.get("sop_web_ipv4"),
                     "mail_hostname": settings.get("sop_mail_hostname") or f"mail.{settings.zone}"}
    if settings.get("sop_web_ipv6"):
        zone_settings["web_ipv6"] = settings.get("sop_web_ipv6")
    if not zone_settings["web_ipv4"]:
        raise PlanError(f"{settings.inventory}: the setting sop_web_ipv4 is missing")

    def records(requests: list[Mapping]) -> Counter:
        return Counter((r["name"], r["type"], r["value"])
                       for r in model.zone_records(requests, zone_settings))

    old, new = records(before), records(after)

    def listed(counter: Counter) -> list[dict]:
        return [{"name": name, "fqdn": settings.zone if name == "@" else f"{name}.{settings.zone}",
                 "type": kind, "value": value}
                for (name, kind, value) in sorted(counter.elements())]

    return {"add": listed(new - old), "remove": listed(old - new)}


# --- Storage --------------------------------------------------------------------


def latest_storage_record(settings: Settings) -> tuple[Path | None, dict | None, str]:
    """The newest storage record (by file name), its data, and a sentence about it."""
    if not settings.get("sop_records_dir"):
        return None, None, "no storage record yet (the inventory sets no sop_records_dir)"
    folder = settings.path("sop_records_dir") / "storage"
    try:
        files = sorted(p for p in folder.glob("*.json") if p.is_file())
    except OSError:
        files = []
    if not files:
        return None, None, f"no storage record yet (none in {folder})"
    path = files[-1]
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        mounts = data["mounts"]
        if not isinstance(mounts, list):
            raise TypeError("mounts is not a list")
        for mount in mounts:
            for key in ("capacity_bytes", "free_bytes", "used_bytes"):
                if not isinstance(mount[key], int) or isinstance(mount[key], bool):
                    raise TypeError(f"{key} is not a whole number")
            if not isinstance(mount["paths"], list):
                raise TypeError("paths is not a list")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return path, None, f"the storage record {path.name} cannot be read ({exc})"
    return path, data, f"storage record {path.name}"


def _storage(settings: Settings, demand_before: dict[str, int],
             demand_after: dict[str, int]) -> dict:
    """Headroom per recorded file system once every quota of the new set is full.

    As the storage check of SOP step 3 counts it: quotas are reservations, so
    the part of them not yet used must fit in the free space, and the reserve
    (``sop_storage_reserve_percent`` of the capacity) must be left over.
    """
    path, record, note = latest_storage_record(settings)
    reserve_percent = int(settings.get("sop_storage_reserve_percent", 15))
    paths = {settings.get("sop_mail_storage_path"): "mail",
             settings.get("sop_web_storage_path"): "web"}
    out: dict[str, Any] = {"record": str(path) if path else None, "note": note,
                           "reserve_percent": reserve_percent, "mounts": []}
    for mount in (record or {}).get("mounts", []):
        kinds = sorted({paths[p] for p in mount["paths"] if p in paths})
        if not kinds:
            continue
        before = sum(demand_before[k] for k in kinds)
        after = sum(demand_after[k] for k in kinds)
        reserve = mount["capacity_bytes"] * reserve_percent // 100
        outstanding = max(after - mount["used_bytes"], 0)
        left = mount["free_bytes"] - outstanding - reserve
        out["mounts"].append({
            "host": str(mount.get("host", "")),
            "mount": str(mount.get("mount", "")),
            "paths": [str(p) for p in mount["paths"]],
            "capacity_bytes": mount["capacity_bytes"],
            "free_bytes": mount["free_bytes"],
            "used_bytes": mount["used_bytes"],
            "allocated_bytes_recorded": mount.get("allocated_bytes"),
            "quota_bytes_before": before,
            "quota_bytes_after": after,
            "reserve_bytes": reserve,
            "headroom_bytes_after": left,
            "fits": left >= 0,
        })
    if record is not None and not out["mounts"]:
        out["note"] += "; it has no file system holding the mail or web storage paths"
    return out


# --- The plan -------------------------------------------------------------------


def _base_requests(folder: Path, base: str | None, policy: dict,
                   today) -> tuple[str, str, list[dict], list]:
    """The base's name and commit, its valid requests and its problems (files
    named as ``<base>:<folder>/<file>``)."""
    repo, inside = _repository(folder)
    base_name, commit = resolve_base(repo, base)
    with tempfile.TemporaryDirectory(prefix="sop-plan-") as tmp:
        read_base(repo, commit, inside, Path(tmp))
        before, base_problems = validate_paths([tmp], policy, today)
    shown_as = f"{base_name}:{inside + '/' if inside else ''}"
    base_problems = [dataclasses.replace(p, file=shown_as + Path(p.file).name)
                     for p in base_problems]
    return base_name, commit, before, base_problems


def _agency_changes(before: list[dict], head: list[dict],
                    unreadable: list[str]) -> dict[str, list]:
    """Agencies added, changed and removed (a base file that could not be read
    counts as changed when the request is still there, else as removed)."""
    old = {r["subdomain"]: r for r in before}
    new = {r["subdomain"]: r for r in head}
    added = [_agency(new[k]) for k in sorted(new.keys() - old.keys() - set(unreadable))]
    removed = [_agency(old[k]) for k in sorted(old.keys() - new.keys())]
    removed += [{"subdomain": k, "unreadable": True} for k in unreadable if k not in new]
    changed = []
    for key in sorted(new.keys() & (old.keys() | set(unreadable))):
        if key in old:
            changes = _field_changes(old[key], new[key])
            if changes:
                changed.append({**_agency(new[key]), "changes": changes})
        else:
            changed.append({**_agency(new[key]), "changes": [], "before_unreadable": True})
    return {"added": added, "changed": changed, "removed": removed}


def _quota(before: list[dict], head: list[dict], mail_path: str,
           web_root: str) -> tuple[dict, dict]:
    """Storage demand by kind before and after, and the quota summary."""
    demand = {}
    for name, requests in (("before", before), ("after", head)):
        demand[name] = {d["kind"]: d["bytes"]
                        for d in model.storage_demand(requests, mail_path, web_root)}
    quota = {
        "before_bytes": sum(demand["before"].values()),
        "after_bytes": sum(demand["after"].values()),
        "by_kind": {kind: {"before_bytes": demand["before"][kind],
                           "after_bytes": demand["after"][kind],
                           "added_bytes": demand["after"][kind] - demand["before"][kind]}
                    for kind in ("mail", "web")},
    }
    quota["added_bytes"] = quota["after_bytes"] - quota["before_bytes"]
    return demand, quota


def make_plan(settings: Settings, folder: Path, base: str | None = None,
              allow_large_change: bool = False) -> dict:
    """The plan as plain data (the JSON output); ``status`` is ok, refused or invalid."""
    policy = settings.policy
    today = regency_today()
    if folder.exists() and not folder.is_dir():
        raise PlanError(f"{folder} is not a folder: `sop plan` compares a folder of requests")
    head, problems = validate_paths([folder], policy, today) if folder.exists() else ([], [])
    report: dict[str, Any] = {"zone": settings.zone, "folder": str(folder)}
    if problems:
        report.update(status="invalid", problems=[_problem(p) for p in problems])
        return report

    base_name, commit, before, base_problems = _base_requests(folder, base, policy, today)
    unreadable = sorted({Path(p.file).name.rsplit(".", 1)[0] for p in base_problems}
                        - {r["subdomain"] for r in before})
    agencies = _agency_changes(before, head, unreadable)
    existing = len({r["subdomain"] for r in before}) + len(unreadable)
    affected = len(agencies["removed"]) + len(agencies["changed"])
    threshold = _threshold(settings)
    percent = round(affected * 100 / existing, 1) if existing else 0.0
    large = percent > threshold

    web_root = str(settings.get("sop_web_storage_path") or "/srv/www")
    mail_path = str(settings.get("sop_mail_storage_path") or "mail")
    demand, quota = _quota(before, head, mail_path, web_root)
    report.update(
        status="refused" if large and not allow_large_change else "ok",
        base={"ref": base_name, "commit": commit},
        summary={
            "existing": existing, "added": len(agencies["added"]),
            "changed": len(agencies["changed"]), "removed": len(agencies["removed"]),
            "unchanged": existing - affected, "after": len({r["subdomain"] for r in head}),
            "affected_percent": percent, "threshold_percent": threshold,
            "large_change": large, "large_change_allowed": bool(large and allow_large_change),
        },
        agencies=agencies,
        dns=_dns(before, head, settings),
        mailboxes=_compare(_mailboxes(before), _mailboxes(head), ("quota", "quota_bytes",
                                                                  "holder")),
        aliases=_compare(_aliases(before), _aliases(head), ("to",)),
        vhosts=_compare(_sites(before, web_root), _sites(head, web_root)),
        hosting_accounts=_compare(_hosting(before), _hosting(head), ("quota", "quota_bytes")),
        databases=_compare(_databases(before), _databases(head)),
        quota=quota,
        storage=_storage(settings, demand["before"], demand["after"]),
        base_problems=[_problem(p) for p in base_problems],
    )
    return report


def _threshold(settings: Settings) -> float:
    value = settings.get("sop_plan_change_threshold_percent", DEFAULT_THRESHOLD_PERCENT)
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if isinstance(value, bool) or not 0 <= number <= 100:
        raise PlanError(f"{settings.inventory}: sop_plan_change_threshold_percent must be a "
                        f"number from 0 to 100, not {value!r}")
    return number


def _problem(problem: Problem) -> dict:
    return {"file": problem.file, "line": problem.line, "field": problem.field,
            "message": problem.message, "text": str(problem)}


# --- Markdown -------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>|#!~])")


def _md(value: object) -> str:
    """Text for a Markdown table cell or line: special characters escaped, one line."""
    if value is None or value == "":
        return "—"
    text = " ".join(str(value).split())
    return _MD_SPECIAL.sub(r"\\\1", text)


def _code(value: object) -> str:
    text = str(value).replace("`", "'")
    return f"`{text}`"


def _size(n: int) -> str:
    """A byte count for people, in the units of the requests (binary: 1G = 1024M).

    Exact below a gigabyte (``512M``) and for whole gigabytes (``3G``); else
    gigabytes with two decimals (``3.25G``).
    """
    sign = "-" if n < 0 else ""
    n = abs(n)
    if n == 0:
        return "0"
    if n < 1 << 30 and n % (1 << 20) == 0 or n % (1 << 30) == 0:
        return sign + format_size(n)
    return f"{sign}{n / (1 << 30):.2f}G"


def _count(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else plural or word + 's'}"


def _signed(n: int) -> str:
    return ("+" if n > 0 else "") + _size(n)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows[:MAX_TABLE_ROWS]]
    if len(rows) > MAX_TABLE_ROWS:
        lines.append(f"\n… and {len(rows) - MAX_TABLE_ROWS} more (see `sop plan --format json`).")
    return lines + [""]


def _alert(kind: str, lines: list[str]) -> list[str]:
    return [f"> [!{kind}]"] + [f"> {line}" for line in lines] + [""]


def _fenced(lines: list[str]) -> list[str]:
    longest = max((len(run) for line in lines for run in re.findall("`+", line)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence, *lines, fence, ""]


def render_markdown(plan: dict) -> str:
    if plan["status"] == "invalid":
        problems = plan["problems"]
        return "\n".join([
            "# Plan: cannot be made",
            "",
            *_alert("CAUTION", [f"**The request files have {len(problems)} problem(s).** "
                                "Nothing can be planned or applied until they are fixed; "
                                "each line names the file, the line and the field."]),
            *_fenced([p["text"] for p in problems]),
        ])
    s, agencies = plan["summary"], plan["agencies"]
    base = plan["base"]
    out = [f"# Plan: what merging this change would do on {_md(plan['zone'])}", "",
           f"Compared with `{_md(base['ref'])}` (commit `{base['commit'][:12]}`): "
           f"{s['existing']} agencies before, {s['after']} after.", ""]
    out += _warnings(plan)
    out += _table(["Agencies", "Count"], [
        ["Added", str(s["added"])],
        ["Changed", _loud(s["changed"])],
        ["Removed", _loud(s["removed"])],
        ["Unchanged", str(s["unchanged"])],
    ])
    if not (s["added"] or s["changed"] or s["removed"]):
        out += ["No agency is added, changed or removed: merging changes nothing on the "
                "servers.", ""]
    out += _agencies_section(agencies)
    out += _resources_section(plan)
    out += _storage_section(plan)
    if plan["base_problems"]:
        out += ["## Problems of the base", "",
                f"These files of `{_md(base['ref'])}` do not pass today's validation; "
                "the plan treats them as unknown:", "",
                *_fenced([p["text"] for p in plan["base_problems"]])]
    return "\n".join(out).rstrip() + "\n"


def _loud(n: int) -> str:
    return f"**{n}**" if n else "0"


def _warnings(plan: dict) -> list[str]:
    s, agencies = plan["summary"], plan["agencies"]
    out: list[str] = []
    if plan["status"] == "refused":
        out += _alert("CAUTION", [
            f"**REFUSED: large change.** {s['removed'] + s['changed']} of {s['existing']} "
            f"existing agencies ({s['affected_percent']:g}%) would be removed or changed; "
            f"the limit is {s['threshold_percent']:g}%.",
            "If this is intended, the approver confirms it: `sop plan --allow-large-change` "
            "(on the pull request: the label `sop:large-change`)."])
    elif s["large_change_allowed"]:
        out += _alert("WARNING", [
            f"**Large change, allowed explicitly:** {s['affected_percent']:g}% of the existing "
            f"agencies are removed or changed (limit {s['threshold_percent']:g}%)."])
    if agencies["removed"]:
        names = ", ".join(f"**{_md(a['subdomain'])}**" for a in agencies["removed"])
        out += _alert("WARNING", [
            f"**REMOVAL: {_count(len(agencies['removed']), 'agency', 'agencies')} would be "
            f"removed:** {names}.",
            "Their DNS names and aliases are taken off the servers and mail to their "
            "addresses is refused from then on; their mailboxes, websites and hosting "
            "accounts are disabled and archived, and deleted for good by the first run after "
            "the retention period (`sop_lifecycle.retention_days`, 30 days by default). "
            "Putting the file back before then restores them with the same passwords."])
    deleted = [k for k in ("mailboxes", "aliases", "vhosts", "hosting_accounts", "databases")
               if plan[k]["delete"]]
    if deleted and not agencies["removed"]:
        counts = ", ".join(_count(len(plan[k]["delete"]), *_NOUNS[k]) for k in deleted)
        out += _alert("WARNING", [f"**DELETION:** {counts} would be deleted (mailboxes and "
                                  "sites: archived, deleted for good after the retention "
                                  "period)."])
    storage = plan["storage"]
    short = [m for m in storage["mounts"] if not m["fits"]]
    if short:
        out += _alert("CAUTION", [
            "**STORAGE: not enough space.** " + "; ".join(
                f"{_md(m['host'])}:{_md(m['mount'])} would be {_size(-m['headroom_bytes_after'])} "
                "short of its reserve" for m in short)
            + ". The storage check (SOP step 3) would stop the run: add disk capacity or "
              "lower the quotas."])
    return out


_NOUNS = {"mailboxes": ("mailbox", "mailboxes"), "aliases": ("alias", "aliases"),
          "vhosts": ("website", "websites"), "hosting_accounts": ("hosting account",
                                                                  "hosting accounts"),
          "databases": ("database", "databases")}


def _agencies_section(agencies: dict) -> list[str]:
    out: list[str] = []
    if agencies["added"]:
        out += ["## Agencies added", ""]
        for a in agencies["added"]:
            out += _agency_block(a)
    if agencies["changed"]:
        out += ["## Agencies changed", ""]
        for a in agencies["changed"]:
            out += [f"### {_md(a['fqdn'])} — {_md(a['name'])} ({_md(a['abbreviation'])})", ""]
            if a.get("before_unreadable"):
                out += ["The base version of this file did not pass validation, so the "
                        "differences cannot be listed; the new version is:", ""]
                out += _agency_lines(a)
                continue
            out += _table(["Field", "Before", "After"],
                          [[_code(c["field"]), _md(c["before"]), _md(c["after"])]
                           for c in a["changes"]])
    if agencies["removed"]:
        out += ["## Agencies removed", ""]
        rows = [[f"**{_md(a['subdomain'])}**", _md(a.get("name")), _md(a.get("abbreviation")),
                 _md(a.get("letter", {}).get("number"))] for a in agencies["removed"]]
        out += _table(["Subdomain", "Agency", "Abbreviation", "Letter of the request"], rows)
    return out


def _agency_block(a: dict) -> list[str]:
    return [f"### {_md(a['fqdn'])} — {_md(a['name'])} ({_md(a['abbreviation'])})", "",
            *_agency_lines(a)]


def _agency_lines(a: dict) -> list[str]:
    letter, contact = a["letter"], a["contact"]
    category = _md(a["category"]) + (f", ends {_md(a['ends'])}" if a.get("ends") else "")
    mail = (f"{_count(a['mailboxes'], 'mailbox', 'mailboxes')} and "
            f"{_count(a['aliases'], 'alias', 'aliases')} at `@{a['mail_domain']}`"
            if a["mail_domain"] else "none")
    return [
        f"- Letter: {_md(letter['number'])} of {_md(letter['date'])}: {_md(letter['subject'])}",
        f"- Category: {category}",
        f"- Contact: {_md(contact['name'])}, {_md(contact['position'])}, "
        f"NIP {_md(contact['nip'])}, {_md(contact['phone'])}",
        f"- Hosting: {_md(a['hosting_quota']) if a['hosting_quota'] else 'none'}"
        + (", with a database" if a.get("database") else ""),
        f"- Mail: {mail}",
        f"- Quota in all: {_size(a['quota_bytes'])}",
        "",
    ]


def _resources_section(plan: dict) -> list[str]:
    out: list[str] = []
    dns = plan["dns"]
    if dns["add"] or dns["remove"]:
        out += ["## DNS records", ""]
        rows = [["add", _code(r["fqdn"]), r["type"], _code(r["value"])] for r in dns["add"]]
        rows += [["**REMOVE**", _code(r["fqdn"]), r["type"], _code(r["value"])]
                 for r in dns["remove"]]
        out += _table(["Action", "Name", "Type", "Value"], rows)
    boxes = plan["mailboxes"]
    if any(boxes.values()):
        out += ["## Mailboxes", ""]
        rows = [["create", _code(b["address"]), _md(b["holder"]), b["quota"]]
                for b in boxes["create"]]
        rows += [["change", _code(b["address"]), _changed(b, "holder"), _changed(b, "quota")]
                 for b in boxes["change"]]
        rows += [["**DELETE**", _code(b["address"]), _md(b["holder"]), b["quota"]]
                 for b in boxes["delete"]]
        out += _table(["Action", "Address", "Holder", "Quota"], rows)
    aliases = plan["aliases"]
    if any(aliases.values()):
        out += ["## Aliases", ""]
        rows = [["create", _code(a["address"]), _targets(a["to"])] for a in aliases["create"]]
        rows += [["change", _code(a["address"]),
                  f"{_targets(a['before']['to'])} → {_targets(a['to'])}"]
                 for a in aliases["change"]]
        rows += [["**DELETE**", _code(a["address"]), _targets(a["to"])]
                 for a in aliases["delete"]]
        out += _table(["Action", "Address", "Forwards to"], rows)
    sites = plan["vhosts"]
    if any(sites.values()):
        out += ["## Websites", ""]
        rows = [["create", ", ".join(map(_code, v["server_names"])), _code(v["root"])]
                for v in sites["create"]]
        rows += [["**DELETE**", ", ".join(map(_code, v["server_names"])), _code(v["root"])]
                 for v in sites["delete"]]
        out += _table(["Action", "Names", "Document root"], rows)
    accounts = plan["hosting_accounts"]
    if any(accounts.values()):
        out += ["## Hosting accounts (SFTP)", ""]
        rows = [["create", _code(h["username"]), _md(h["subdomain"]), h["quota"]]
                for h in accounts["create"]]
        rows += [["change", _code(h["username"]), _md(h["subdomain"]), _changed(h, "quota")]
                 for h in accounts["change"]]
        rows += [["**DELETE**", _code(h["username"]), _md(h["subdomain"]), h["quota"]]
                 for h in accounts["delete"]]
        out += _table(["Action", "Account", "Subdomain", "Quota"], rows)
    databases = plan["databases"]
    if any(databases.values()):
        out += ["## Databases (MariaDB)", ""]
        rows = [["create", _code(d["database"]), _md(d["subdomain"])]
                for d in databases["create"]]
        rows += [["**REMOVE**", _code(d["database"]), _md(d["subdomain"])]
                 for d in databases["delete"]]
        out += _table(["Action", "Database and user", "Subdomain"], rows)
    return out


def _changed(item: dict, key: str) -> str:
    before, after = item["before"][key], item[key]
    return _md(after) if before == after else f"{_md(before)} → {_md(after)}"


def _targets(targets: list[str]) -> str:
    return ", ".join(_code(t) for t in targets)


def _storage_section(plan: dict) -> list[str]:
    quota, storage = plan["quota"], plan["storage"]
    mail, web = quota["by_kind"]["mail"], quota["by_kind"]["web"]
    out = ["## Quota and storage", ""]
    out += _table(["Quotas", "Mail", "Web hosting", "All"], [
        ["Before", _size(mail["before_bytes"]), _size(web["before_bytes"]),
         _size(quota["before_bytes"])],
        ["After", _size(mail["after_bytes"]), _size(web["after_bytes"]),
         _size(quota["after_bytes"])],
        ["**Added**", _signed(mail["added_bytes"]), _signed(web["added_bytes"]),
         f"**{_signed(quota['added_bytes'])}**"],
    ])
    if not storage["mounts"]:
        out += [f"Storage headroom: {_md(storage['note'])}. The storage check (SOP step 3) "
                "measures the servers when the change is applied and stops the run if the "
                "quotas do not fit.", ""]
        return out
    out += [f"Headroom according to the {_md(storage['note'])}, once every quota of the "
            f"new set is full and {storage['reserve_percent']}% of each file system is kept "
            "in reserve (as the storage check of SOP step 3 counts it):", ""]
    rows = []
    for m in storage["mounts"]:
        verdict = "fits" if m["fits"] else "**SHORT: the run would stop**"
        rows.append([_md(m["host"]), _code(m["mount"]), _size(m["capacity_bytes"]),
                     _size(m["used_bytes"]), _size(m["quota_bytes_after"]),
                     _size(m["reserve_bytes"]), _size(m["headroom_bytes_after"]), verdict])
    out += _table(["Host", "File system", "Capacity", "Used", "Quotas after", "Reserve",
                   "Left above the reserve", "Verdict"], rows)
    return out


# --- The command ------------------------------------------------------------------


def _cmd_plan(args) -> int:
    settings = load_settings(args.inventory, args.repo)
    folder = args.folder or settings.path("sop_requests_dir")
    try:
        plan = make_plan(settings, folder, args.base, args.allow_large_change)
    except ValueError as exc:  # an invalid sop_policy in the inventory
        raise PlanError(f"{settings.inventory}: {exc} (sop_policy)") from exc
    text = json.dumps(plan, indent=2, ensure_ascii=False) + "\n" if args.format == "json" \
        else render_markdown(plan)
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `sop plan | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if plan["status"] == "invalid":
        for problem in plan["problems"]:
            print(problem["text"], file=sys.stderr)
        print(f"{len(plan['problems'])} problem(s) found; no plan.", file=sys.stderr)
        return EXIT_INVALID
    if plan["status"] == "refused":
        s = plan["summary"]
        print(f"sop plan: refused: {s['removed']} removed and {s['changed']} changed of "
              f"{s['existing']} existing agencies ({s['affected_percent']:g}%) is more than "
              f"the limit of {s['threshold_percent']:g}%. If this is intended, run again with "
              "--allow-large-change.", file=sys.stderr)
        return EXIT_REFUSED
    return EXIT_OK


def add_parser(sub) -> None:
    p = sub.add_parser(
        "plan", help="what merging the request changes would do (for the approver)",
        description="Compare the request files of the work tree with a base revision and "
                    "show what applying them would do. Nothing is changed.",
        epilog=exits.epilog(exits.OK, exits.INVALID, exits.CANNOT_RUN, exits.REFUSED))
    p.add_argument("folder", nargs="?", type=Path,
                   help="request folder (default: the inventory's sop_requests_dir)")
    p.add_argument("--base", metavar="REF",
                   help="git revision to compare with (default: main, else origin/main)")
    p.add_argument("--format", choices=["markdown", "json"], default="markdown",
                   help="Markdown for people (default) or JSON")
    p.add_argument("--allow-large-change", action="store_true",
                   help="make the plan although it removes or changes more than "
                        "sop_plan_change_threshold_percent of the existing agencies")
    p.set_defaults(func=_cmd_plan)
