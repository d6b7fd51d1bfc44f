"""Each host's last good backup, as `sop backup status` and the run report
show it (issue 19): flagged when older than ``sop_backup.max_age_hours``
(default 26) or when the last attempt failed. No import of the run's code:
`sop apply` and `sop backup` both read it."""

from __future__ import annotations

import datetime as dt
import json
import sys

from .config import Settings

DEFAULT_MAX_AGE_HOURS = 26
REPORT_TASK = "Read the last backup's status for the run report"
RED = "\033[31m"
RESET = "\033[0m"


def status_rows_of(settings: Settings, results: dict[str, dict],
                   now: dt.datetime | None = None) -> list[dict]:
    """One row per host from `sop-backup status` outputs."""
    now = now or dt.datetime.now(dt.UTC)
    max_age = float((settings.get("sop_backup") or {}).get("max_age_hours")
                    or DEFAULT_MAX_AGE_HOURS)
    rows = []
    for host, res in sorted(results.items()):
        try:
            status = json.loads(res["stdout"]) if res["rc"] == 0 else {}
        except ValueError:
            status = {}
        good = status.get("last_good") or {}
        last = status.get("last") or {}
        row = {"host": host, "last_good": good.get("time"), "archive": good.get("archive"),
               "original_size": good.get("original_size"),
               "repository_size": good.get("repository_size"),
               "last_failed": last.get("ok") is False, "message": last.get("message", ""),
               "problems": []}
        if res["rc"] != 0:
            row["problems"].append(f"status not read: {res['stderr'].strip()[-200:]}")
        if not good:
            row["problems"].append("no good backup")
        else:
            age = now - dt.datetime.fromisoformat(good["time"])
            row["age_hours"] = round(age.total_seconds() / 3600, 1)
            if row["age_hours"] > max_age:
                row["problems"].append(f"older than {max_age:g} h")
        if row["last_failed"]:
            row["problems"].append(f"last backup failed: {row['message']}")
        rows.append(row)
    return rows


def rows_from_events(result, settings: Settings) -> list[dict]:
    """The run report's table: each host's status, read by the task of
    playbooks/backup.yml during `sop apply` (no run of its own)."""
    results = {}
    for event in getattr(result, "events", None) or []:
        data = event.get("event_data") or {}
        if event.get("event") == "runner_on_ok" and data.get("task") == REPORT_TASK:
            res = data.get("res") or {}
            results[data["host"]] = {"rc": res.get("rc", 1), "stdout": res.get("stdout", ""),
                                     "stderr": res.get("stderr", "")}
    return status_rows_of(settings, results)


def _size(n) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def print_rows(rows: list[dict], out=print) -> None:
    color = sys.stdout.isatty()
    out(f"{'host':<32} {'last good backup (UTC)':<26} {'size':>10} {'repository':>11}  state")
    for row in rows:
        state = "OK" if not row["problems"] else "PERIKSA: " + "; ".join(row["problems"])
        line = (f"{row['host']:<32} {(row['last_good'] or '-')[:19]:<26} "
                f"{_size(row['original_size']):>10} {_size(row['repository_size']):>11}  {state}")
        out(f"{RED}{line}{RESET}" if row["problems"] and color else line)
