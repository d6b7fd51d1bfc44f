"""What happens after creation: suspension, removal with an undo window,
events that end (issue 9). Pure decisions; the playbook carries them out.

Because the repository is declarative, deleting a request file (or a mailbox
from it) is a change to live servers. Nothing is destroyed on the spot:

- an account whose request (or mailbox) is gone is **archived**: disabled and
  its data moved aside with the date; the register keeps it, marked with the
  archive date;
- an archived account is **purged** (data deleted, register entry dropped)
  only once the retention period (inventory, default 30 days) has passed, by a
  later run;
- a request marked ``status: suspended`` keeps everything but serves a plain
  "suspended" page and refuses mail logins;
- an event (``category: kegiatan``) is warned about ``event_warning_days``
  before ``ends``, suspended after ``ends``, and archived
  ``event_archive_after_days`` later;
- removing more than ``removal_threshold_percent`` of the agencies in one run
  is refused unless explicitly allowed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from . import model

DEFAULTS = {
    "retention_days": 30,
    "event_warning_days": 30,
    "event_archive_after_days": 30,
    "removal_threshold_percent": 30,
}


class LifecycleError(Exception):
    """A transition the inventory's guard refuses (plain words)."""


@dataclass(frozen=True)
class Settings:
    retention_days: int = 30
    event_warning_days: int = 30
    event_archive_after_days: int = 30
    removal_threshold_percent: int = 30

    @classmethod
    def from_mapping(cls, values: Mapping | None) -> Settings:
        merged = {**DEFAULTS, **{k: v for k, v in (values or {}).items() if k in DEFAULTS}}
        return cls(**{k: int(float(v)) for k, v in merged.items()})


def _date(value) -> dt.date | None:
    if value in (None, ""):
        return None
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


def agency_state(req: Mapping, today: dt.date, cfg: Settings) -> tuple[str, str]:
    """(state, reason) of one request: active, suspended or expired."""
    ends = _date(req["agency"].get("ends"))
    if ends and today > ends + dt.timedelta(days=cfg.event_archive_after_days):
        return "expired", f"kegiatan berakhir {ends.isoformat()}"
    if req.get("status") == "suspended":
        return "suspended", "ditangguhkan sesuai permohonan"
    if ends and today > ends:
        return "suspended", f"kegiatan berakhir {ends.isoformat()}"
    return "active", ""


def _same_agency(account_id: str, entry: Mapping, wanted: Mapping, since: dt.date,
                 cfg: Settings) -> None:
    """An archived account comes back only to the agency that held it (issue 16):
    another agency asking for the same label or parent address within the
    retention would get the previous agency's mail, site and password."""
    held, asks = entry.get("agency"), wanted.get("agency")
    if held and asks and held != asks:
        until = since + dt.timedelta(days=cfg.retention_days)
        raise LifecycleError(
            f"{account_id} ({wanted.get('subdomain')}) belonged to another agency ({held}) "
            f"and is archived since {since.isoformat()} with its data, kept until "
            f"{until.isoformat()}; it is not given to {asks}. Nothing was changed. Choose "
            "another subdomain or address, or wait until the archive is purged."
        )


def decide(requests: Iterable[Mapping], accounts: Mapping[str, Mapping], today: dt.date,
           cfg: Settings, allow_large_removal: bool = False) -> dict:
    """The lifecycle of every agency and account for this run.

    ``accounts`` is the register's (id -> entry with ``subdomain`` and,
    once archived, ``archived``: ISO date).

    Returns ``provision`` (requests whose accounts exist and are served, each
    with its effective ``status``), ``suspended`` (labels among them that are
    served suspended), ``archive`` (register ids to archive now),
    ``archived`` (ids already archived and kept), ``restore`` (archived ids
    asked for again within the undo window: their data comes back, with the
    same password), ``purge`` (ids whose retention has passed),
    ``warnings`` (events ending soon) and ``states`` (label -> {state,
    reason}).
    """
    states, provision, suspended, warnings = _agency_states(requests, today, cfg)
    wanted = {a["id"]: a for a in model.accounts(provision)}
    archive, archived, purge, restore = _sort_accounts(accounts, wanted, today, cfg)
    if not allow_large_removal:
        _guard_removal(accounts, archive, provision, states, cfg)
    return {
        # Each with its effective ``status`` (active or suspended) for the model.
        "provision": [{**r, "status": states[r["subdomain"]]["state"]} for r in provision],
        "suspended": suspended,
        "restore": restore,
        "archive": archive,
        "archived": archived,
        "purge": purge,
        "warnings": warnings,
        "states": states,
    }


def _agency_states(requests: Iterable[Mapping], today: dt.date, cfg: Settings):
    """Each agency's state today; those still served; the suspended; warnings."""
    states: dict[str, dict] = {}
    provision, suspended, warnings = [], [], []
    for req in requests:
        state, reason = agency_state(req, today, cfg)
        states[req["subdomain"]] = {"state": state, "reason": reason}
        if state == "expired":
            continue
        provision.append(req)
        if state == "suspended":
            suspended.append(req["subdomain"])
        ends = _date(req["agency"].get("ends"))
        if state == "active" and ends and (ends - today).days <= cfg.event_warning_days:
            warnings.append(
                f"Kegiatan {req['agency']['name']} ({req['fqdn']}) berakhir "
                f"{ends.isoformat()}: subdomain akan ditangguhkan setelah tanggal itu."
            )
    return states, provision, suspended, warnings


def _sort_accounts(accounts: Mapping[str, Mapping], wanted: Mapping[str, Mapping],
                   today: dt.date, cfg: Settings):
    """Register accounts to archive now, kept archived, to purge, to restore."""
    archive, archived, purge, restore = [], [], [], []
    for account_id, entry in sorted(accounts.items()):
        since = _date(entry.get("archived"))
        if account_id in wanted:
            if since is not None:  # asked for again within the undo window
                _same_agency(account_id, entry, wanted[account_id], since, cfg)
                restore.append(account_id)
            continue
        if since is None:
            archive.append(account_id)
        elif (today - since).days >= cfg.retention_days:
            purge.append(account_id)
        else:
            archived.append(account_id)
    return archive, archived, purge, restore


def _guard_removal(accounts: Mapping[str, Mapping], archive: list[str], provision: list,
                   states: Mapping[str, Mapping], cfg: Settings) -> None:
    """Refuse a run that would remove more than the threshold of agencies or accounts."""
    live_labels = {e.get("subdomain") for e in accounts.values() if not e.get("archived")}
    # Ended events leave on their own date: the request says so, not a deletion.
    expired = {label for label, st in states.items() if st["state"] == "expired"}
    removed_labels = {accounts[i].get("subdomain") for i in archive} - {
        r["subdomain"] for r in provision} - expired
    # Accounts count too (issue 16): emptying every agency's mailboxes removes
    # no agency but most of the accounts.
    live_ids = [i for i, e in accounts.items() if not e.get("archived")]
    removed_ids = [i for i in archive if accounts[i].get("subdomain") not in expired]
    for what, removed, live in (("agencies", sorted(removed_labels), live_labels),
                                ("accounts", sorted(removed_ids), live_ids)):
        if not live:
            continue
        share = 100 * len(removed) / len(live)
        if share > cfg.removal_threshold_percent:
            raise LifecycleError(
                f"this run would remove {len(removed)} of {len(live)} {what} "
                f"({share:.0f}% > {cfg.removal_threshold_percent}%): "
                f"{', '.join(removed)}. Nothing was changed. If this is "
                "intended, run again with the removal explicitly allowed "
                "(sop apply --allow-large-removal)."
            )


# --- Carrying the decisions out -----------------------------------------------

TODAY_ENV = "SOP_TODAY"


def today_from(value: object = None) -> dt.date:
    """The lifecycle's "today".

    An explicit override (the playbook's ``sop_today``, `sop`'s
    ``$SOP_TODAY``; ``YYYY-MM-DD``) rehearses a later date: the tests use it
    to run event expiry and retention without waiting. Empty: today in the
    regency (WITA), like the validator's.
    """
    if value in (None, ""):
        from .validate import regency_today

        return regency_today()
    try:
        return _date(value)
    except ValueError as exc:
        raise LifecycleError(f"the lifecycle date {value!r} is not a date (YYYY-MM-DD)") from exc


def archive_name(name: str, day: object) -> str:
    """Folder name of an archive: the account's name and the day it was archived."""
    return f"{name}-{_date(day).isoformat()}"


def storage_actions(decision: Mapping, accounts: Mapping[str, Mapping], today: dt.date,
                    settings: Mapping) -> dict:
    """What the mail and web hosts do with archived data this run.

    ``settings``: ``mail_root`` (Maildirs: ``<root>/<domain>/<local part>``)
    and ``web_root`` (sites: ``<root>/<label>``). Archives live in
    ``<root>/.archive/<name>-<YYYY-MM-DD>``, the date being the register's
    ``archived`` (today for what is archived now). Every archived account is
    listed under ``archive`` on every run until it is purged, so a run that
    failed half-way is completed by the next one. Returns per host kind
    (``mail``, ``web``) the folder lists ``archive``, ``restore``, ``purge``
    (each ``{name, path, archive}``) and, for ``web``, the hosting users to
    ``lock`` (archived) and ``remove`` (purged), and ``databases``: the same
    three lists of MariaDB databases (``{name, user, subdomain, archive}``,
    the archive a dump file ``<web root>/.archive/<name>-<date>.sql``).
    """
    roots = {"mailbox": str(settings["mail_root"]).rstrip("/"),
             "hosting": str(settings["web_root"]).rstrip("/"),
             "database": str(settings["web_root"]).rstrip("/")}
    out = {kind: {"archive": [], "restore": [], "purge": []} for kind in ("mail", "web")}
    out["web"].update(lock=[], remove=[])
    databases: dict[str, list] = {"archive": [], "restore": [], "purge": []}

    def item(account_id: str, day: object) -> tuple[str, dict]:
        entry = accounts[account_id]
        kind = entry.get("kind") or next(
            (k for k in ("hosting", "database") if account_id.startswith(k + ":")), "mailbox")
        root = roots[kind]
        if kind == "database":  # a dump beside the site's archived files
            name = entry["username"]
            return "database", {"name": name, "user": name, "subdomain": entry["subdomain"],
                                "archive": f"{root}/.archive/{archive_name(name, day)}.sql"}
        if kind == "hosting":
            name = entry["subdomain"]
            path = f"{root}/{name}"
        else:
            name = account_id
            local, _, domain = account_id.partition("@")
            path = f"{root}/{domain}/{local}"
        return ("web" if kind == "hosting" else "mail"), {
            "name": name, "path": path,
            "archive": f"{root}/.archive/{archive_name(name, day)}",
            "username": entry.get("username", name),
        }

    def add(kind: str, key: str, it: dict) -> None:
        (databases if kind == "database" else out[kind])[key].append(it)

    for account_id in decision["archive"]:
        kind, it = item(account_id, today)
        add(kind, "archive", it)
    for account_id in decision["archived"]:
        kind, it = item(account_id, accounts[account_id]["archived"])
        add(kind, "archive", it)
    for account_id in decision["restore"]:
        kind, it = item(account_id, accounts[account_id]["archived"])
        add(kind, "restore", it)
    for account_id in decision["purge"]:
        kind, it = item(account_id, accounts[account_id]["archived"])
        add(kind, "purge", it)
    out["web"]["lock"] = sorted(i["username"] for i in out["web"]["archive"])
    out["web"]["remove"] = sorted(i["username"] for i in out["web"]["purge"])
    out["web"]["databases"] = databases
    for lists in (*out.values(), databases):
        for key in ("archive", "restore", "purge"):
            lists[key].sort(key=lambda i: i["name"])
    return out


def summary(decision: Mapping, accounts: Mapping[str, Mapping], today: dt.date,
            cfg: Settings) -> dict:
    """The run report's lifecycle section (plain data, no secrets)."""
    def entries(ids, day=None):
        out = []
        for account_id in ids:
            entry = accounts.get(account_id, {})
            since = _date(day or entry.get("archived"))
            out.append({
                "id": account_id, "kind": entry.get("kind"),
                "username": entry.get("username"), "subdomain": entry.get("subdomain"),
                "archived": since.isoformat() if since else None,
                "purge_after": (since + dt.timedelta(days=cfg.retention_days)).isoformat()
                if since else None,
            })
        return out

    return {
        "today": today.isoformat(),
        "retention_days": cfg.retention_days,
        "states": {k: dict(v) for k, v in sorted(decision["states"].items())},
        "suspended": sorted(decision["suspended"]),
        "archived_now": entries(decision["archive"], today),
        "archived_kept": entries(decision["archived"]),
        "restored": entries(decision["restore"]),
        "purged": entries(decision["purge"]),
        "warnings": list(decision["warnings"]),
    }
