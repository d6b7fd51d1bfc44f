"""Storage: hosting data records and supervision (SOP step 3, record 2, warnings 2-5).

* :func:`storage_paths` turns the requests into the storage check's input:
  per storage path (mail, web), every account folder with its quota.
* After a run, :func:`record_run` writes the SOP's "hosting data" record
  (``<sop_records_dir>/storage/<run_id>.json``, format in docs/records.md):
  per host and file system capacity, free space and allocation, and per
  agency what each account uses against its quota, as the storage check
  measured them on the hosts.
* :func:`supervision` lists the agencies at or above the warning share of a
  quota, with their contact; :func:`forecast` fits a least-squares line
  through the history of records and says when each file system fills;
  :func:`chart_svg` draws capacity, allocation, use and the forecast.
* ``sop storage`` prints the supervision list and the forecast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from . import exits
from .files import write_atomic
from .formatting import REGENCY_TZ, format_bytes_id, format_date_id, format_datetime_id, md_cell

RECORD_FORMAT = 1
RECORDS_SUBDIR = "storage"
DEFAULT_WARN_PERCENT = 80
# The forecast fits the records of the last WINDOW_DAYS before the latest one,
# and only says something once there are MIN_RECORDS over MIN_SPAN_HOURS.
WINDOW_DAYS = 90
MIN_RECORDS = 3
MIN_SPAN_HOURS = 24
# At most this many records of the window are read: a record of 500 agencies
# is about half a megabyte. Files are named by run id (the UTC start), so they
# are chosen by name, spread over the window, before any is parsed.
HISTORY_LIMIT = 120
_RUN_ID_FORMAT = "%Y%m%dT%H%M%SZ"

DAY = 86400.0


# ---------------------------------------------------------------------------
# What the storage check measures: storage paths and account folders
# ---------------------------------------------------------------------------


def storage_paths(requests: Iterable[Mapping], mail_path: str, web_path: str) -> list[dict]:
    """The storage check's input: each storage path with its accounts and quotas.

    Account folders follow the roles' layout: a mailbox's Dovecot home is
    ``<mail root>/<domain>/<local part>`` (dovecot role, ``home=%Ld/%Ln``), a
    hosting account's home is ``<web root>/<label>`` (model.hosting_accounts).
    Mail account ids are the addresses (Dovecot's user names), hosting ids the
    register's ``hosting:<label>``.
    """
    from .model import hosting_account_id

    mail_root = str(mail_path).rstrip("/") or "/"
    web_root = str(web_path).rstrip("/") or "/"
    mail_accounts, web_accounts = [], []
    for req in requests:
        if req.get("hosting"):
            web_accounts.append({
                "id": hosting_account_id(req["subdomain"]),
                "path": f"{web_root}/{req['subdomain']}",
                "quota_bytes": int(req["hosting"]["quota_bytes"]),
            })
        for box in (req.get("mail") or {}).get("mailboxes", []):
            local, _, domain = box["address"].lower().partition("@")
            mail_accounts.append({
                "id": box["address"].lower(),
                "path": f"{mail_root}/{domain}/{local}",
                "quota_bytes": int(box["quota_bytes"]),
            })
    return [
        {"path": mail_root, "kind": "mail", "accounts": mail_accounts},
        {"path": web_root, "kind": "web", "accounts": web_accounts},
    ]


def facts_from_events(events: Iterable[Mapping]) -> tuple[list[dict], list[dict]]:
    """The storage check's facts from ansible-runner events: (mounts, account usage)."""
    mounts: list[dict] = []
    usage: list[dict] = []
    for event in events:
        data = event.get("event_data") or {}
        facts = (data.get("res") or {}).get("ansible_facts") or {}
        host = data.get("host")
        for entry in facts.get("storage_check_result") or []:
            mounts.append({"host": host, **entry})
        for entry in facts.get("storage_check_usage") or []:
            usage.append({"host": host, **entry})
        for entry in facts.get("storage_check_database_sizes") or []:
            usage.append({"host": host, "id": f"mariadb:{entry['name']}", "kind": "database",
                          "used_bytes": entry["used_bytes"], "disk_bytes": None,
                          "source": "mariadb"})
    return mounts, usage


# ---------------------------------------------------------------------------
# The record (SOP record 2: hosting data)
# ---------------------------------------------------------------------------


def _percent(used: int | None, quota: int) -> float | None:
    if used is None or not quota:
        return None
    return round(used * 100 / quota, 1)


def agencies_usage(requests: Iterable[Mapping], usage: Iterable[Mapping]) -> list[dict]:
    """Per agency: each account (hosting, mailboxes) used against its quota; a
    site's database (``database_bytes``) counts in its hosting account's use."""
    from .model import (
        database_name,
        hosting_account_id,
        hosting_username,
        wants_database,
    )

    by_id = {str(u["id"]).lower(): u for u in usage}
    out = []
    for req in requests:
        accounts = []
        wanted = []
        if req.get("hosting"):
            wanted.append(("hosting", hosting_account_id(req["subdomain"]),
                           hosting_username(req["subdomain"]), None,
                           req["hosting"]["quota_bytes"]))
        for box in (req.get("mail") or {}).get("mailboxes", []):
            wanted.append(("mailbox", box["address"].lower(), box["address"], box.get("holder"),
                           box["quota_bytes"]))
        for kind, account_id, name, holder, quota in wanted:
            found = by_id.get(account_id.lower())
            used = found.get("used_bytes") if found else None
            database = None
            if kind == "hosting" and wants_database(req):
                # The site's database counts in the site's use (MariaDB's figure).
                db = by_id.get(f"mariadb:{database_name(req['subdomain'])}")
                database = db["used_bytes"] if db else None
                if database is not None:
                    used = (used or 0) + database
            accounts.append({
                "id": account_id,
                "kind": kind,
                "name": name,
                "holder": holder,
                "host": found.get("host") if found else None,
                "path": found.get("path") if found else None,
                "quota_bytes": int(quota),
                "used_bytes": used,
                "disk_bytes": found.get("disk_bytes") if found else None,
                **({"database_bytes": database} if kind == "hosting" and wants_database(req)
                   else {}),
                "source": found.get("source") if found else None,
                "percent": _percent(used, int(quota)),
            })
        measured = [a["used_bytes"] for a in accounts if a["used_bytes"] is not None]
        out.append({
            "subdomain": req["subdomain"],
            "agency": req["agency"]["name"],
            "abbreviation": req["agency"].get("abbreviation"),
            "contact": {k: (req.get("contact") or {}).get(k)
                        for k in ("name", "position", "phone")},
            "quota_bytes": sum(a["quota_bytes"] for a in accounts),
            "used_bytes": sum(measured) if measured else None,
            "accounts": accounts,
        })
    return out


def build_record(*, run_id: str, taken: str, inventory: str, status: str, check_mode: bool,
                 overcommit: bool, reserve_percent: int | None, warn_percent: int,
                 requests: Iterable[Mapping], mounts: list[dict], usage: list[dict]) -> dict:
    """One run's storage record (the format docs/records.md describes)."""
    fields = ("host", "mount", "paths", "capacity_bytes", "free_bytes", "allocated_bytes",
              "used_bytes", "outstanding_bytes", "reserve_percent", "reserve_bytes",
              "headroom_bytes", "ok", "message")
    mounts = [{k: m.get(k) for k in fields} for m in mounts]
    return {
        "format": RECORD_FORMAT,
        "run_id": run_id,
        "taken": taken,
        "inventory": inventory,
        "status": status,
        "check_mode": check_mode,
        "overcommit": overcommit,
        "overcommitted": [f"{m['host']}:{m['mount']}" for m in mounts if m.get("ok") is False],
        "reserve_percent": reserve_percent,
        "warn_percent": warn_percent,
        "mounts": mounts,
        "agencies": agencies_usage(requests, usage),
    }


def records_dir(settings) -> Path:
    """``sop_records_dir`` of the inventory (default: ``<state dir>/records``)."""
    if settings.get("sop_records_dir"):
        return settings.path("sop_records_dir")
    return settings.state_dir / "records"


def write_record(directory: Path, record: Mapping) -> Path:
    """Write ``<directory>/storage/<run_id>.json`` atomically (mode 0640); return its path."""
    folder = Path(directory) / RECORDS_SUBDIR
    folder.mkdir(parents=True, exist_ok=True, mode=0o750)
    path = folder / f"{record['run_id']}.json"
    text = json.dumps(record, ensure_ascii=False, indent=1, sort_keys=True) + "\n"
    write_atomic(path, text, 0o640)
    return path


def _run_time(path: Path) -> datetime | None:
    try:
        return datetime.strptime(path.stem, _RUN_ID_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def _pick(files: list[Path], window_days: float, limit: int) -> list[Path]:
    """The newest file, and at most ``limit`` files of the window spread over it."""
    timed = [(t, p) for p in files if (t := _run_time(p)) is not None]
    # Files not named by a run id (copied in by hand) are read as they are.
    untimed = [p for p in files if _run_time(p) is None][-limit:]
    if not timed:
        return untimed
    newest = max(t for t, _ in timed)
    start = newest - timedelta(days=window_days)
    bucket = timedelta(days=window_days) / limit
    chosen: dict[int, Path] = {}
    for t, p in sorted(timed):
        if t >= start:
            chosen[int((t - start) / bucket)] = p  # the newest file of each bucket
    picked = set(chosen.values()) | {p for t, p in timed if t == newest} | set(untimed)
    return sorted(picked)


def load_history(directory: Path, window_days: float = WINDOW_DAYS,
                 limit: int = HISTORY_LIMIT) -> list[dict]:
    """Records of the last ``window_days`` before the newest, oldest first.

    At most about ``limit`` of them, spread evenly over the window (the newest
    is always read); unreadable files are skipped with a warning.
    """
    folder = Path(directory) / RECORDS_SUBDIR
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    out = []
    for path in _pick(files, window_days, limit):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            print(f"sop: skipping unreadable storage record {path}", file=sys.stderr)
            continue
        if isinstance(record, dict) and record.get("taken") and record.get("mounts") is not None:
            out.append(record)
    out.sort(key=lambda r: _when(r["taken"]))
    return out


def _when(value: str | datetime) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# ---------------------------------------------------------------------------
# Supervision (warnings 3 and 5): agencies near a quota
# ---------------------------------------------------------------------------


def supervision(record: Mapping, warn_percent: int | float = DEFAULT_WARN_PERCENT) -> list[dict]:
    """Agencies with an account at or above ``warn_percent`` of its quota, fullest first."""
    out = []
    for agency in record.get("agencies") or []:
        flagged = [
            a for a in agency.get("accounts") or []
            if a.get("quota_bytes") and a.get("used_bytes") is not None
            and a["used_bytes"] * 100 >= warn_percent * a["quota_bytes"]
        ]
        if flagged:
            flagged.sort(key=lambda a: -(a["used_bytes"] / a["quota_bytes"]))
            out.append({
                "subdomain": agency["subdomain"],
                "agency": agency["agency"],
                "abbreviation": agency.get("abbreviation"),
                "contact": agency.get("contact") or {},
                "accounts": flagged,
                "max_percent": max(_percent(a["used_bytes"], a["quota_bytes"]) for a in flagged),
            })
    out.sort(key=lambda a: (-a["max_percent"], a["subdomain"]))
    return out


# ---------------------------------------------------------------------------
# Forecast (warnings 3 and 4): when does each file system fill?
# ---------------------------------------------------------------------------


def least_squares(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Slope and intercept of the least-squares line through the points."""
    n = len(xs)
    if n < 2:
        raise ValueError("a line needs at least two points")
    mx = sum(xs) / n
    my = sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        raise ValueError("the points share one x value")
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return slope, my - slope * mx


def _series(history: Iterable[Mapping]) -> dict[tuple[str, str], list[dict]]:
    """History points per (host, mount), oldest first.

    Capacity and free space are measurements whatever the run did. The
    allocation is the one in force: a refused or check-mode run only measured
    what it would have allocated, so the allocation before it still holds
    (None while no run has allocated anything yet).
    """
    out: dict[tuple[str, str], list[dict]] = {}
    in_force: dict[tuple[str, str], int | None] = {}
    for record in sorted(history, key=lambda r: _when(r["taken"])):
        taken = _when(record["taken"])
        applied = record.get("status") != "refused" and not record.get("check_mode")
        for m in record.get("mounts") or []:
            if m.get("capacity_bytes") is None or m.get("free_bytes") is None:
                continue
            key = (str(m.get("host")), str(m.get("mount")))
            if applied:
                in_force[key] = int(m.get("allocated_bytes") or 0)
            out.setdefault(key, []).append({
                "taken": taken.isoformat(timespec="seconds"),
                "capacity_bytes": int(m["capacity_bytes"]),
                "free_bytes": int(m["free_bytes"]),
                "fs_used_bytes": int(m["capacity_bytes"]) - int(m["free_bytes"]),
                "allocated_bytes": in_force.get(key),
                "used_bytes": int(m.get("used_bytes") or 0),
                "reserve_bytes": int(m.get("reserve_bytes") or 0),
                "paths": list(m.get("paths") or []),
            })
    return out


def forecast_points(points: list[Mapping], *, window_days: float = WINDOW_DAYS,
                    min_records: int = MIN_RECORDS,
                    min_span_hours: float = MIN_SPAN_HOURS) -> dict:
    """Fit the use of one file system over time and say when its free space runs out.

    What fills a disk is everything written to it, so the fitted series is the
    file system's use (capacity - free): an added disk (a capacity change) is
    not mistaken for shrinking use. The fill time is counted from the latest
    free space at the fitted growth rate.
    """
    last = points[-1]
    t_last = _when(last["taken"])
    recent = [p for p in points if t_last - _when(p["taken"]) <= timedelta(days=window_days)]
    span_h = (t_last - _when(recent[0]["taken"])).total_seconds() / 3600
    out: dict[str, Any] = {
        "records": len(recent),
        "span_hours": round(span_h, 2),
        "window_days": window_days,
        "bytes_per_day": None,
        "days_to_full": None,
        "full_date": None,
        "days_to_reserve": None,
        "reserve_date": None,
    }
    if len(recent) < min_records or span_h < min_span_hours:
        out["status"] = "insufficient_history"
        out["text"] = (
            f"Riwayat belum cukup untuk perkiraan: perlu sedikitnya {min_records} catatan "
            f"dalam rentang {min_span_hours:g} jam; tersedia {len(recent)} catatan dalam "
            f"{_hours_id(span_h)}."
        )
        return out
    xs = [(_when(p["taken"]) - t_last).total_seconds() / DAY for p in recent]
    ys = [float(p["fs_used_bytes"]) for p in recent]
    slope, _ = least_squares(xs, ys)
    out["bytes_per_day"] = round(slope, 1)
    if slope <= 0:
        out["status"] = "no_growth"
        out["text"] = (
            f"Tidak ada pertumbuhan: pemakaian tetap atau berkurang dalam {len(recent)} catatan "
            f"terakhir ({_hours_id(span_h)}); tidak ada perkiraan kapan penuh."
        )
        return out
    free = last["free_bytes"]
    days_full = free / slope
    days_reserve = (free - last["reserve_bytes"]) / slope
    out["status"] = "growth"
    out["days_to_full"] = round(days_full, 1)
    out["full_date"] = _local_date(t_last + timedelta(days=days_full))
    out["days_to_reserve"] = round(days_reserve, 1)
    out["reserve_date"] = _local_date(t_last + timedelta(days=max(days_reserve, 0)))
    reserve_text = (
        "batas cadangan sudah terlampaui" if days_reserve <= 0 else
        f"batas cadangan tercapai sekitar {format_date_id(out['reserve_date'])} "
        f"({_days_id(days_reserve)} lagi)"
    )
    out["text"] = (
        f"Bertambah {format_bytes_id(round(slope))} per hari; pada laju ini ruang penuh sekitar "
        f"{format_date_id(out['full_date'])} ({_days_id(days_full)} lagi); {reserve_text}."
    )
    return out


def _local_date(moment: datetime) -> str:
    return moment.astimezone(REGENCY_TZ).date().isoformat()


def _hours_id(hours: float) -> str:
    if hours < 1:
        return f"{round(hours * 60):d} menit"
    if hours < 48:
        return f"{hours:.1f} jam".replace(".", ",")
    return f"{hours / 24:.1f} hari".replace(".", ",")


def _days_id(days: float) -> str:
    if days < 1:
        return "kurang dari 1 hari"
    return f"±{round(days):d} hari"


def forecast(history: list[Mapping], **kw) -> list[dict]:
    """Per host and file system: the latest figures, the history and the forecast."""
    out = []
    for (host, mount), points in sorted(_series(history).items()):
        last = points[-1]
        out.append({
            "host": host,
            "mount": mount,
            "paths": last["paths"],
            "capacity_bytes": last["capacity_bytes"],
            "free_bytes": last["free_bytes"],
            "allocated_bytes": last["allocated_bytes"],  # in force (see _series)
            "used_bytes": last["used_bytes"],
            "reserve_bytes": last["reserve_bytes"],
            "points": [{k: p[k] for k in ("taken", "capacity_bytes", "free_bytes",
                                          "fs_used_bytes", "allocated_bytes", "reserve_bytes")}
                       for p in points],
            **forecast_points(points, **kw),
        })
    return out


# ---------------------------------------------------------------------------
# The wrapper's part: after `sop apply`
# ---------------------------------------------------------------------------


def record_run(settings, run: Mapping, requests: list[Mapping], events: Iterable[Mapping],
               *, history_kw: Mapping | None = None) -> dict:
    """Write this run's storage record; return what the run record and report add.

    Returns ``storage_record`` (path or None when the run measured nothing),
    ``supervision`` and ``forecast`` for the report, and ``notes``.
    """
    mounts, usage = facts_from_events(events)
    warn = int(settings.get("sop_storage_warn_percent") or DEFAULT_WARN_PERCENT)
    out: dict[str, Any] = {"storage_record": None, "notes": [],
                           "supervision": {"warn_percent": warn, "agencies": []},
                           "forecast": []}
    if not mounts:
        return out
    reserve = mounts[0].get("reserve_percent")
    record = build_record(
        run_id=run["run_id"], taken=run["started"], inventory=run.get("inventory", ""),
        status="refused" if any(m.get("ok") is False for m in mounts) and not run.get("overcommit")
        else run["status"],
        check_mode=bool(run.get("check_mode")), overcommit=bool(run.get("overcommit")),
        reserve_percent=reserve, warn_percent=warn, requests=requests, mounts=mounts, usage=usage,
    )
    folder = records_dir(settings)
    out["storage_record"] = str(write_record(folder, record))
    out["supervision"]["agencies"] = supervision(record, warn)
    out["forecast"] = forecast(load_history(folder), **(history_kw or {}))
    for f in out["forecast"]:
        f["reserve_percent"] = reserve
    if record["overcommit"] and record["overcommitted"]:
        out["notes"].append(
            "Overcommit: alokasi kuota melampaui cadangan ruang pada "
            + ", ".join(record["overcommitted"]) + "; tambah kapasitas disk segera."
        )
    if out["supervision"]["agencies"]:
        names = ", ".join(a["agency"] for a in out["supervision"]["agencies"])
        out["notes"].append(f"Instansi dengan pemakaian kuota ≥ {warn}%: {names}; lihat bagian D.")
    return out


# ---------------------------------------------------------------------------
# `sop storage`
# ---------------------------------------------------------------------------


def report_text(record: Mapping, agencies: list[dict], forecasts: list[dict], warn: int) -> str:
    """The supervision list and the forecast as Markdown (readable as plain text)."""
    cell, size = md_cell, format_bytes_id
    lines = [
        "# Pengawasan Ruang Penyimpanan Subdomain dan Email",
        "",
        f"Catatan terakhir: `{record['run_id']}` ({format_datetime_id(record['taken'])}), "
        f"inventori {cell(record.get('inventory'))}.",
        "",
        f"## Instansi dengan pemakaian kuota ≥ {warn}%",
        "",
    ]
    if agencies:
        lines += ["| No | Instansi | Akun | Terpakai | Kuota | % | Pengelola | Telepon |",
                  "|---:|---|---|---:|---:|---:|---|---|"]
        for i, a in enumerate(agencies, 1):
            contact = a["contact"]
            who = cell(contact.get("name"))
            if contact.get("position"):
                who += f" ({cell(contact['position'])})"
            for j, acc in enumerate(a["accounts"]):
                first = j == 0
                lines.append(
                    f"| {i if first else ''} "
                    f"| {cell(a['agency']) + ' (' + a['subdomain'] + ')' if first else ''} "
                    f"| {cell(acc['name'])}{' (hosting)' if acc['kind'] == 'hosting' else ''} "
                    f"| {size(acc['used_bytes'])} | {size(acc['quota_bytes'])} "
                    f"| {str(acc['percent']).replace('.', ',')}% "
                    f"| {who if first else ''} | {cell(contact.get('phone')) if first else ''} |"
                )
    else:
        lines.append(f"Tidak ada instansi yang memakai {warn}% kuota atau lebih.")
    lines += ["", "## Perkiraan ruang penyimpanan", ""]
    if forecasts:
        lines += ["| Host | Titik kait | Direktori | Kapasitas | Sisa | Teralokasi | Data instansi "
                  "| Pertumbuhan per hari | Perkiraan |",
                  "|---|---|---|---:|---:|---:|---:|---:|---|"]
        for f in forecasts:
            rate = size(round(f["bytes_per_day"])) if f["bytes_per_day"] is not None else "-"
            lines.append(
                f"| {cell(f['host'])} | {cell(f['mount'])} | {cell(', '.join(f['paths']))} "
                f"| {size(f['capacity_bytes'])} | {size(f['free_bytes'])} "
                f"| {size(f['allocated_bytes'])} | {size(f['used_bytes'])} | {rate} "
                f"| {cell(f['text'])} |"
            )
    else:
        lines.append("Tidak ada data ruang penyimpanan.")
    return "\n".join(lines) + "\n"


def _cmd_storage(args) -> int:
    from .config import load_settings

    settings = load_settings(args.inventory, args.repo)
    folder = records_dir(settings)
    history = load_history(folder)
    if not history:
        print(f"sop: no storage records in {folder / RECORDS_SUBDIR} yet; run `sop apply` first",
              file=sys.stderr)
        return exits.CANNOT_RUN
    latest = history[-1]
    warn = args.warn_percent if args.warn_percent is not None else int(
        settings.get("sop_storage_warn_percent") or DEFAULT_WARN_PERCENT)
    agencies = supervision(latest, warn)
    forecasts = forecast(history)
    if args.json:
        json.dump({"record": latest["run_id"], "taken": latest["taken"], "warn_percent": warn,
                   "supervision": agencies,
                   "forecast": [{k: v for k, v in f.items() if k != "points"} for f in forecasts]},
                  sys.stdout, ensure_ascii=False, indent=2)
        print()
    else:
        sys.stdout.write(report_text(latest, agencies, forecasts, warn))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "storage", help="agencies near their quotas and when the storage fills "
                        "(from the storage records of past runs)",
        description="From the storage records that every `sop apply` writes (SOP warnings 3-5): "
                    "the agencies using at least a share of their quotas, with their contact, "
                    "and per file system the growth and the day it would fill. Nothing is "
                    "changed.",
        epilog=exits.epilog(exits.OK, exits.CANNOT_RUN))
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--warn-percent", type=int, default=None,
                   help="list accounts at or above this share of their quota "
                        "(default: sop_storage_warn_percent, else 80)")
    p.set_defaults(func=_cmd_storage)
