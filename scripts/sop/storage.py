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

import html
import json
import math
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .files import write_atomic

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
    return mounts, usage


# ---------------------------------------------------------------------------
# The record (SOP record 2: hosting data)
# ---------------------------------------------------------------------------


def _percent(used: int | None, quota: int) -> float | None:
    if used is None or not quota:
        return None
    return round(used * 100 / quota, 1)


def agencies_usage(requests: Iterable[Mapping], usage: Iterable[Mapping]) -> list[dict]:
    """Per agency: each account (hosting, mailboxes) used against its quota."""
    from .model import hosting_account_id, hosting_username

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
    from .documents import format_bytes_id, format_date_id

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
    from .validate import REGENCY_TZ

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
# Chart: inline SVG for the report (no plotting library needed)
# ---------------------------------------------------------------------------

_MONTHS_SHORT = ("Jan", "Feb", "Mar", "Apr", "Mei", "Jun", "Jul", "Agu", "Sep", "Okt", "Nov",
                 "Des")
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
_TIME_STEPS = [60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, DAY, 2 * DAY,
               7 * DAY, 14 * DAY, 30 * DAY, 91 * DAY, 182 * DAY, 365 * DAY]
COLORS = {"capacity": "#1a1a1a", "reserve": "#8c8c8c", "allocated": "#d9822b",
          "used": "#1f5fa8", "full": "#c0392b"}


def _nice_step(span: float, ticks: int = 5) -> float:
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    for mult in (1, 2, 2.5, 5, 10):
        if raw <= mult * power:
            return mult * power
    return 10 * power  # pragma: no cover


def _byte_axis(top: float) -> tuple[int, float, list[float]]:
    """Unit exponent, top of the axis in bytes and the tick values in bytes."""
    exp = 0
    while exp < len(_UNITS) - 1 and top >= 1024 ** (exp + 1):
        exp += 1
    unit = 1024 ** exp
    step = _nice_step(top / unit) * unit
    ticks = [i * step for i in range(int(top // step) + 2)]
    return exp, ticks[-1], ticks


def _tick_label(value: float, exp: int) -> str:
    number = value / 1024 ** exp
    text = f"{number:.1f}".rstrip("0").rstrip(".").replace(".", ",")
    return f"{text} {_UNITS[exp]}"


def _time_label(moment: datetime, step: float) -> str:
    from .validate import REGENCY_TZ

    local = moment.astimezone(REGENCY_TZ)
    day = f"{local.day} {_MONTHS_SHORT[local.month - 1]}"
    if step < DAY:
        return f"{day} {local:%H.%M}"
    return f"{day} {local.year}"


def _time_ticks(t0: float, t1: float) -> tuple[float, list[float]]:
    span = max(t1 - t0, 1.0)
    step = next((s for s in _TIME_STEPS if span / s <= 5), _TIME_STEPS[-1])
    offset = 8 * 3600  # ticks on round WITA times
    first = math.ceil((t0 + offset) / step) * step - offset
    ticks = []
    t = first
    while t <= t1:
        ticks.append(t)
        t += step
    return step, ticks


def chart_svg(entry: Mapping, width: int = 680, height: int = 300) -> str:
    """Capacity, reserve limit, allocation, use and the forecast of one file system.

    ``entry`` is one item of :func:`forecast`. Text is escaped; the result is
    safe to embed in the report's HTML.
    """
    pts = entry.get("points") or []
    esc = html.escape
    left, right, top, bottom = 78, 18, 14, 80
    pw, ph = width - left - right, height - top - bottom
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
           f'width="17cm" height="{17 * height / width:.2f}cm" '
           f'font-family="DejaVu Sans, sans-serif" font-size="11">',
           f"<title>{esc(str(entry.get('host')))}:{esc(str(entry.get('mount')))}</title>"]
    if not pts:
        svg.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">'
                   "Belum ada data</text></svg>")
        return "".join(svg)

    times = [_when(p["taken"]).timestamp() for p in pts]
    t_last = times[-1]
    t0, t1 = times[0], t_last
    growth = entry.get("status") == "growth" and entry.get("bytes_per_day")
    if growth:
        # Far enough ahead to show the fill point, unless it is far beyond the history.
        ahead = min(entry["days_to_full"] * 1.08, max(3 * (t1 - t0) / DAY, 90.0)) * DAY
        t1 = t_last + ahead
    if t1 - t0 < 600:  # runs minutes apart: show ten minutes around them
        pad = (600 - (t1 - t0)) / 2
        t0, t1 = t0 - pad, t1 + pad
    else:
        t1 += (t1 - t0) * 0.02
        t0 -= (t1 - t0) * 0.02

    last = pts[-1]
    f_end_t = f_end_y = None
    if growth:
        f_end_t = min(t_last + entry["days_to_full"] * DAY, t1)
        f_end_y = last["fs_used_bytes"] + entry["bytes_per_day"] * (f_end_t - t_last) / DAY
    y_top = max([p["capacity_bytes"] for p in pts] + [p["allocated_bytes"] or 0 for p in pts]
                + [p["fs_used_bytes"] for p in pts] + [f_end_y or 0]) * 1.12 or 1.0
    exp, y_top, y_ticks = _byte_axis(y_top)

    def x(t: float) -> float:
        return round(left + (t - t0) / (t1 - t0) * pw, 1)

    def y(v: float) -> float:
        return round(top + ph - v / y_top * ph, 1)

    # Grid and axes
    for v in y_ticks:
        svg.append(f'<line x1="{left}" y1="{y(v)}" x2="{left + pw}" y2="{y(v)}" '
                   'stroke="#d9d9d9" stroke-width="0.8"/>')
        svg.append(f'<text x="{left - 6}" y="{y(v) + 4}" text-anchor="end">'
                   f"{esc(_tick_label(v, exp))}</text>")
    step, x_ticks = _time_ticks(t0, t1)
    for t in x_ticks:
        svg.append(f'<line x1="{x(t)}" y1="{top + ph}" x2="{x(t)}" y2="{top + ph + 4}" '
                   'stroke="#000" stroke-width="0.8"/>')
        svg.append(f'<text x="{x(t)}" y="{top + ph + 17}" text-anchor="middle">'
                   f"{esc(_time_label(datetime.fromtimestamp(t, UTC), step))}</text>")
    svg.append(f'<text x="{left + pw}" y="{top + ph + 31}" text-anchor="end" font-size="9" '
               'fill="#555">waktu WITA (UTC+8)</text>')
    svg.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" '
               'stroke="#000" stroke-width="0.8"/>')

    def step_line(values: list[float | None], extend_to: float) -> str:
        """A value holds until the next record changes it; None: not known yet."""
        known = [(t, v) for t, v in zip(times, values, strict=True) if v is not None]
        corners = []
        for i, (t, v) in enumerate(known):
            if i:
                corners.append((t, known[i - 1][1]))
            corners.append((t, v))
        if known:
            corners.append((extend_to, known[-1][1]))
        return " ".join(f"{x(t)},{y(v)}" for t, v in corners)

    for values, color, extra, extend_to in (
        ([p["capacity_bytes"] for p in pts], COLORS["capacity"], ' stroke-width="2"', t1),
        ([p["capacity_bytes"] - p["reserve_bytes"] for p in pts], COLORS["reserve"],
         ' stroke-width="1.4" stroke-dasharray="2,3"', t1),
        ([p["allocated_bytes"] for p in pts], COLORS["allocated"], ' stroke-width="1.6"',
         t_last),
    ):
        line = step_line(values, extend_to)
        if line:
            svg.append(f'<polyline points="{line}" fill="none" stroke="{color}"{extra}/>')
    used = " ".join(f"{x(t)},{y(p['fs_used_bytes'])}" for t, p in zip(times, pts, strict=True))
    svg.append(f'<polyline points="{used}" fill="none" stroke="{COLORS["used"]}" '
               'stroke-width="1.8"/>')
    for t, p in zip(times, pts, strict=True):
        svg.append(f'<circle cx="{x(t)}" cy="{y(p["fs_used_bytes"])}" r="2.4" '
                   f'fill="{COLORS["used"]}"/>')
    if growth:
        svg.append(f'<line x1="{x(t_last)}" y1="{y(last["fs_used_bytes"])}" x2="{x(f_end_t)}" '
                   f'y2="{y(f_end_y)}" stroke="{COLORS["used"]}" stroke-width="1.8" '
                   'stroke-dasharray="6,4"/>')
        from .documents import format_date_id

        label = f"penuh ±{format_date_id(entry['full_date'])}"
        if f_end_t >= t_last + entry["days_to_full"] * DAY - 1:
            cx, cy = x(f_end_t), y(f_end_y)
            svg.append(f'<circle cx="{cx}" cy="{cy}" r="4" fill="none" '
                       f'stroke="{COLORS["full"]}" stroke-width="1.8"/>')
            svg.append(f'<text x="{cx - 8}" y="{cy - 7}" text-anchor="end" '
                       f'fill="{COLORS["full"]}">{esc(label)}</text>')
        else:
            svg.append(f'<text x="{left + pw - 6}" y="{y(f_end_y) - 8}" text-anchor="end" '
                       f'fill="{COLORS["full"]}">{esc(label)} (di luar grafik)</text>')
    elif entry.get("status") in ("insufficient_history", "no_growth"):
        note = ("riwayat belum cukup untuk perkiraan" if entry["status"] == "insufficient_history"
                else "tidak ada pertumbuhan")
        svg.append(f'<text x="{left + pw - 6}" y="{top + ph - 8}" text-anchor="end" '
                   f'fill="#555">{esc(note)}</text>')

    # Legend, wrapped over as many rows as it needs
    reserve_pct = entry.get("reserve_percent")
    legend = [("Kapasitas", COLORS["capacity"], "", False),
              (f"Batas cadangan{f' {reserve_pct}%' if reserve_pct is not None else ''}",
               COLORS["reserve"], "2,3", False),
              ("Teralokasi (kuota)", COLORS["allocated"], "", False),
              ("Terpakai (sistem berkas)", COLORS["used"], "", True),
              ("Perkiraan", COLORS["used"], "6,4", False)]
    lx, ly = left, top + ph + 48
    for text, color, dash, dot in legend:
        item_w = 34 + len(text) * 6.6
        if lx + item_w > width - right:
            lx, ly = left, ly + 18
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        svg.append(f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 24}" y2="{ly - 4}" '
                   f'stroke="{color}" stroke-width="2"{dash_attr}/>')
        if dot:
            svg.append(f'<circle cx="{lx + 12}" cy="{ly - 4}" r="2.4" fill="{color}"/>')
        svg.append(f'<text x="{lx + 30}" y="{ly}">{esc(text)}</text>')
        lx += item_w + 14
    svg.append("</svg>")
    return "".join(svg)


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
    from .documents import _md_cell as cell
    from .documents import format_bytes_id as size
    from .documents import format_datetime_id

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
        return 1
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
    p = sub.add_parser("storage", help="agencies near their quotas and when the storage fills "
                                       "(from the storage records of past runs)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--warn-percent", type=int, default=None,
                   help="list accounts at or above this share of their quota "
                        "(default: sop_storage_warn_percent, else 80)")
    p.set_defaults(func=_cmd_storage)
