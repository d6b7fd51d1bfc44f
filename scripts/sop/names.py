"""The naming register (SOP record 3): every subdomain and address, with its
agency, status and dates, for the archive.

Generated, never edited by hand: `sop apply` writes it after every run into
``<sop_records_dir>/names/<run_id>.md`` (Bahasa Indonesia, for people) and
``.json`` (for programs), and `sop names` prints the current one. It joins
the request files (what is asked for), the lifecycle decision of the run
(active, suspended, ended) and the credential register (when accounts were
created and archived). Agencies whose request is gone are named from the
previous naming register, since the request file no longer says.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from . import lifecycle, model
from .files import write_atomic

SUBDIR = "names"
STATUS_ID = {
    "active": "aktif",
    "suspended": "ditangguhkan",
    "expired": "berakhir, diarsipkan",
    "archived": "diarsipkan",
    "purged": "dihapus permanen",
}
KIND_ID = {"subdomain": "subdomain", "mailbox": "kotak surat", "alias": "alias",
           "hosting": "akun hosting"}


def _iso(value) -> str | None:
    if value in (None, ""):
        return None
    return value.isoformat() if isinstance(value, dt.date) else str(value)


class _Dates:
    """Creation and archive dates of accounts, from the credential register
    and the run's lifecycle (archived this run: the register may not say so
    yet, in check mode)."""

    def __init__(self, accounts: Mapping[str, Mapping], life: Mapping, retention: int):
        self.accounts = accounts
        self.retention = retention
        self.archived_now = {e["id"]: e.get("archived") for e in life.get("archived_now") or []}

    def created(self, ids: Iterable[str]) -> str | None:
        dates = sorted(str(self.accounts[i]["created"]) for i in ids
                       if i in self.accounts and self.accounts[i].get("created"))
        return dates[0] if dates else None

    def archive(self, account_id: str) -> tuple[str | None, str | None]:
        """(archived, purge after) of an account, or (None, None)."""
        since = (self.accounts.get(account_id, {}).get("archived")
                 or self.archived_now.get(account_id))
        if not since:
            return None, None
        day = dt.date.fromisoformat(str(since))
        return day.isoformat(), (day + dt.timedelta(days=self.retention)).isoformat()


def _account_row(base: dict, kind: str, name: str, account_id: str, state: str,
                 dates: _Dates, **extra) -> dict:
    """A hosting account or mailbox: archived on its own, or with its agency."""
    archived, purge_after = dates.archive(account_id)
    return {**base, "kind": kind, "name": name, **extra,
            "status": "archived" if archived and state != "expired" else state,
            "created": dates.created([account_id]), "archived": archived,
            "purge_after": purge_after, "reason": None}


def _request_rows(req: Mapping, states: Mapping, dates: _Dates, seen: set[str]) -> list[dict]:
    """The subdomain of one request, its hosting account, mailboxes and aliases."""
    label = req["subdomain"]
    state = states.get(label, {}).get("state", "active")
    ids = [a["id"] for a in model.accounts([req])]
    base = {"subdomain": label, "agency": req["agency"]["name"],
            "abbreviation": req["agency"]["abbreviation"],
            "category": req["agency"]["category"],
            "letter_date": _iso(req["letter"]["date"]),
            "ends": _iso(req["agency"].get("ends"))}
    archived, purge_after = dates.archive(ids[0]) if ids and state == "expired" else (None, None)
    rows = [{**base, "kind": "subdomain", "name": req["fqdn"], "status": state,
             "created": dates.created(ids), "archived": archived, "purge_after": purge_after,
             "reason": states.get(label, {}).get("reason") or None}]
    if req.get("hosting"):
        account_id = model.hosting_account_id(label)
        rows.append(_account_row(base, "hosting", model.hosting_username(label), account_id,
                                 state, dates))
        seen.add(account_id)
    mail = req.get("mail") or {}
    for box in mail.get("mailboxes", []):
        rows.append(_account_row(base, "mailbox", box["address"], box["address"], state, dates,
                                 holder=box["holder"]))
        seen.add(box["address"])
    for alias in mail.get("aliases", []):
        rows.append({**base, "kind": "alias", "name": alias["address"],
                     "to": list(alias["to"]), "status": state, "created": None,
                     "archived": None, "purge_after": None, "reason": None})
    return rows


def _gone_rows(accounts: Mapping[str, Mapping], life: Mapping, dates: _Dates, seen: set[str],
               labels: set[str], known_agency: Mapping) -> list[dict]:
    """Accounts of requests (or mailboxes) that are gone: archived until purged;
    and those purged this run."""
    purged = {e["id"] for e in life.get("purged") or []}
    rows = []
    for account_id, entry in sorted(accounts.items()):
        if account_id in seen or account_id in purged \
                or not (entry.get("archived") or account_id in dates.archived_now):
            continue
        label = entry.get("subdomain")
        archived, purge_after = dates.archive(account_id)
        rows.append({"subdomain": label, "agency": known_agency.get(label),
                     "kind": entry.get("kind") or "mailbox",
                     "name": entry.get("username") or account_id, "status": "archived",
                     "created": _iso(entry.get("created")), "archived": archived,
                     "purge_after": purge_after, "reason": None if label in labels
                     else "permohonan dicabut"})
    for entry in life.get("purged") or []:
        label = entry.get("subdomain")
        rows.append({"subdomain": label, "agency": known_agency.get(label),
                     "kind": entry.get("kind") or "mailbox",
                     "name": entry.get("username") or entry["id"], "status": "purged",
                     "created": None, "archived": entry.get("archived"),
                     "purged": life.get("today"), "purge_after": entry.get("purge_after"),
                     "reason": None})
    return rows


_KIND_ORDER = ["subdomain", "hosting", "mailbox", "alias"]


def build(requests: Iterable[Mapping], accounts: Mapping[str, Mapping], life: Mapping,
          previous: Mapping | None = None) -> dict:
    """The register as plain data: one row per name, sorted by subdomain then name.

    ``life`` is the run's lifecycle summary (``lifecycle.summary``), ``previous``
    the last register written (agency names of removed requests).
    """
    requests = list(requests)
    states = life.get("states") or {}
    retention = int(life.get("retention_days") or lifecycle.DEFAULTS["retention_days"])
    known_agency = {row["subdomain"]: row.get("agency")
                    for row in (previous or {}).get("names", []) if row.get("subdomain")}
    dates = _Dates(accounts, life, retention)
    seen: set[str] = set()
    rows = [row for req in requests for row in _request_rows(req, states, dates, seen)]
    rows += _gone_rows(accounts, life, dates, seen, {r["subdomain"] for r in requests},
                       known_agency)
    rows.sort(key=lambda r: (r["subdomain"] or "", _KIND_ORDER.index(r["kind"])
                             if r["kind"] in _KIND_ORDER else 9, r["name"]))
    return {"format": 1, "date": life.get("today"), "retention_days": retention,
            "names": rows}


def _cell(value) -> str:
    text = "-" if value in (None, "", []) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(register: Mapping, zone: str = "") -> str:
    lines = [
        "# DAFTAR PENAMAAN SUBDOMAIN DAN EMAIL INSTANSI",
        "",
        f"Zona: {zone or '-'} · Tanggal: {register.get('date') or '-'} · "
        f"Masa simpan arsip: {register.get('retention_days')} hari",
        "",
        "Dibuat otomatis oleh `sop apply` (catatan SOP nomor 3); jangan diubah dengan tangan.",
        "",
        "| No | Nama | Jenis | Instansi | Status | Dibuat | Berakhir | Diarsipkan | "
        "Dihapus mulai | Keterangan |",
        "|---:|---|---|---|---|---|---|---|---|---|",
    ]
    for n, row in enumerate(register.get("names", []), 1):
        note = row.get("reason") or ""
        if row.get("kind") == "alias":
            note = "diteruskan ke " + ", ".join(row.get("to") or [])
        elif row.get("kind") == "mailbox" and row.get("holder"):
            note = f"pemegang: {row['holder']}" + (f"; {note}" if note else "")
        if row.get("purged"):
            note = f"dihapus {row['purged']}"
        agency = row.get("agency")
        if agency and row.get("abbreviation"):
            agency = f"{agency} ({row['abbreviation']})"
        lines.append("| " + " | ".join(_cell(v) for v in (
            n, row["name"], KIND_ID.get(row["kind"], row["kind"]), agency,
            STATUS_ID.get(row["status"], row["status"]), row.get("created"), row.get("ends"),
            row.get("archived"), None if row.get("purged") else row.get("purge_after"),
            note)) + " |")
    if not register.get("names"):
        lines.append("| - | Belum ada nama yang terdaftar. | | | | | | | | |")
    return "\n".join(lines) + "\n"


def latest(folder: Path) -> dict | None:
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    for path in reversed(files):
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
    return None


def write_register(settings, requests: list[dict], accounts: Mapping[str, Mapping],
                   life: Mapping, run_id: str) -> dict[str, Path]:
    """Write ``<records>/names/<run_id>.md`` and ``.json`` (0640 in a 0750 folder)."""
    folder = settings.path("sop_records_dir") / SUBDIR
    folder.mkdir(parents=True, exist_ok=True, mode=0o750)
    register = build(requests, accounts, life, latest(folder))
    register["run_id"] = run_id
    paths = {"md": folder / f"{run_id}.md", "json": folder / f"{run_id}.json"}
    write_atomic(paths["md"], render_markdown(register, settings.zone), 0o640)
    write_atomic(paths["json"], json.dumps(register, ensure_ascii=False, indent=1,
                                           sort_keys=True) + "\n", 0o640)
    return paths


# --- `sop names` ------------------------------------------------------------------


def _cmd_names(args) -> int:
    from .config import load_settings
    from .exits import RequestsInvalid
    from .register import Register, vault_password
    from .validate import validate_paths

    settings = load_settings(args.inventory, args.repo)
    requests, problems = validate_paths([settings.path("sop_requests_dir")], settings.policy)
    if problems:
        raise RequestsInvalid(f"{len(problems)} problem(s) in the requests; run sop validate")
    register = Register(settings.path("sop_register_file"),
                        vault_password(settings.path("sop_vault_password_file")))
    accounts = {k: {f: v[f] for f in ("username", "kind", "subdomain", "archived", "created")
                    if f in v} for k, v in register.accounts.items()}
    cfg = lifecycle.Settings.from_mapping(settings.get("sop_lifecycle") or {})
    today = lifecycle.today_from(os.environ.get(lifecycle.TODAY_ENV) or settings.get("sop_today"))
    # What the next run would decide; nothing is refused here, nothing changes.
    decision = lifecycle.decide(requests, accounts, today, cfg, allow_large_removal=True)
    life = lifecycle.summary(decision, accounts, today, cfg)
    life["purged"] = []  # not purged until a run does it
    folder = settings.path("sop_records_dir") / SUBDIR
    data = build(requests, accounts, life, latest(folder))
    if args.format == "json":
        sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True) + "\n")
    else:
        sys.stdout.write(render_markdown(data, settings.zone))
    return 0


def add_parser(sub) -> None:
    from . import exits

    p = sub.add_parser(
        "names", help="the naming register (SOP record 3): every subdomain and address with "
                      "agency, status and dates",
        description="Print the naming register as the next run would write it: every "
                    "subdomain, mailbox, alias and hosting account with its agency, status "
                    "(active, suspended, archived, purged) and dates. $SOP_TODAY (YYYY-MM-DD) "
                    "shows it at another date. Nothing is changed.",
        epilog=exits.epilog(exits.OK, exits.INVALID, exits.CANNOT_RUN))
    p.add_argument("--format", choices=["markdown", "json"], default="markdown",
                   help="Markdown for people (default) or JSON")
    p.set_defaults(func=_cmd_names)
