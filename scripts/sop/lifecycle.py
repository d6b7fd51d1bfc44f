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
        return cls(**{k: int(v) for k, v in merged.items()})


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


def decide(requests: Iterable[Mapping], accounts: Mapping[str, Mapping], today: dt.date,
           cfg: Settings, allow_large_removal: bool = False) -> dict:
    """The lifecycle of every agency and account for this run.

    ``accounts`` is the register's (id -> entry with ``subdomain`` and,
    once archived, ``archived``: ISO date).

    Returns ``provision`` (requests whose accounts exist and are served),
    ``suspended`` (labels among them that are served suspended), ``archive``
    (register ids to archive now), ``archived`` (ids already archived and
    kept), ``purge`` (ids whose retention has passed), ``warnings`` (events
    ending soon) and ``states`` (label -> {state, reason}).
    """
    requests = list(requests)
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

    wanted = {a["id"] for a in model.accounts(provision)}
    archive, archived, purge = [], [], []
    for account_id, entry in sorted(accounts.items()):
        if account_id in wanted:
            continue
        since = _date(entry.get("archived"))
        if since is None:
            archive.append(account_id)
        elif (today - since).days >= cfg.retention_days:
            purge.append(account_id)
        else:
            archived.append(account_id)

    live_labels = {e.get("subdomain") for e in accounts.values() if not e.get("archived")}
    # Ended events leave on their own date: the request says so, not a deletion.
    expired = {label for label, st in states.items() if st["state"] == "expired"}
    removed_labels = {accounts[i].get("subdomain") for i in archive} - {
        r["subdomain"] for r in provision} - expired
    if live_labels and not allow_large_removal:
        share = 100 * len(removed_labels) / len(live_labels)
        if share > cfg.removal_threshold_percent:
            raise LifecycleError(
                f"this run would remove {len(removed_labels)} of {len(live_labels)} agencies "
                f"({share:.0f}% > {cfg.removal_threshold_percent}%): "
                f"{', '.join(sorted(removed_labels))}. Nothing was changed. If this is "
                "intended, run again with the removal explicitly allowed "
                "(sop apply --allow-large-removal)."
            )
    return {
        "provision": provision,
        "suspended": suspended,
        "archive": archive,
        "archived": archived,
        "purge": purge,
        "warnings": warnings,
        "states": states,
    }
