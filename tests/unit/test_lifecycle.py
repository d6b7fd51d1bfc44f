"""Lifecycle decisions (issue 9): suspension, removal with an undo window,
events that end, and the removal guard."""

from __future__ import annotations

import datetime as dt

import pytest

from sop import lifecycle as lc

ZONE = "sumbabaratdayakab.go.id"
TODAY = dt.date(2026, 11, 30)
CFG = lc.Settings()


def req(label, status=None, ends=None, boxes=("admin",), hosting=True):
    r = {
        "subdomain": label, "fqdn": f"{label}.{ZONE}",
        "agency": {"name": f"Agency {label}", "abbreviation": label.upper(),
                   "category": "kegiatan" if ends else "instansi", "ends": ends},
        "hosting": {"quota_bytes": 1} if hosting else None,
        "mail": {"address_domain": f"{label}.{ZONE}", "mailboxes": [
            {"address": f"{b}@{label}.{ZONE}"} for b in boxes]} if boxes else None,
    }
    if status:
        r["status"] = status
    return r


def register_of(*requests, archived=None):
    from sop.model import accounts

    out = {}
    for a in accounts(requests):
        out[a["id"]] = {"subdomain": a["subdomain"]}
    for account_id, day in (archived or {}).items():
        out[account_id]["archived"] = day
    return out


def test_everything_requested_is_provisioned_and_nothing_archived():
    reqs = [req("dinkes"), req("bappeda")]
    d = lc.decide(reqs, register_of(*reqs), TODAY, CFG)
    assert [r["subdomain"] for r in d["provision"]] == ["dinkes", "bappeda"]
    assert d["archive"] == d["purge"] == d["suspended"] == []


def test_a_removed_mailbox_is_archived_not_deleted():
    # 1 of 5 accounts: under the removal guard, which counts accounts too.
    before = req("dinkes", boxes=("admin", "kepala", "humas", "umum"))
    after = req("dinkes", boxes=("admin", "humas", "umum"))
    d = lc.decide([after], register_of(before), TODAY, CFG)
    assert d["archive"] == [f"kepala@dinkes.{ZONE}"]
    assert d["purge"] == []


def test_archived_accounts_are_kept_until_the_retention_passes():
    gone = req("lama")
    keep = [req(x) for x in ("a1", "a2", "a3", "a4")]
    reg = register_of(gone, *keep, archived={"hosting:lama": "2026-11-10",
                                             f"admin@lama.{ZONE}": "2026-10-30"})
    d = lc.decide(keep, reg, TODAY, CFG)
    assert d["archived"] == ["hosting:lama"]          # 20 days: kept
    assert d["purge"] == [f"admin@lama.{ZONE}"]      # 31 days: purged
    assert d["archive"] == []


def test_suspension_keeps_the_accounts():
    r = req("dinkes", status="suspended")
    d = lc.decide([r], register_of(r), TODAY, CFG)
    assert d["suspended"] == ["dinkes"] and d["archive"] == []
    assert d["states"]["dinkes"]["state"] == "suspended"


@pytest.mark.parametrize(
    ("ends", "state", "warned"),
    [
        ("2027-03-31", "active", False),    # far away
        ("2026-12-20", "active", True),     # within 30 days: warned
        ("2026-11-29", "suspended", False),  # ended yesterday
        ("2026-10-30", "suspended", False),  # ended 31 days ago: still within the 31
        ("2026-10-29", "expired", False),    # ended 32 days ago: archived
    ],
)
def test_events_warn_then_suspend_then_expire(ends, state, warned):
    r = req("pasola", ends=ends)
    d = lc.decide([r], register_of(r), TODAY, lc.Settings(event_archive_after_days=31))
    assert d["states"]["pasola"]["state"] == state
    assert bool(d["warnings"]) is warned
    if state == "expired":
        assert d["provision"] == [] and set(d["archive"]) == {"hosting:pasola",
                                                              f"admin@pasola.{ZONE}"}
    else:
        assert d["archive"] == []


def test_removing_too_many_agencies_is_refused_unless_allowed():
    reqs = [req(f"a{i}") for i in range(10)]
    reg = register_of(*reqs)
    d = lc.decide(reqs[:7], reg, TODAY, CFG)  # 3 of 10 = 30%: allowed
    assert sorted(d["archive"]) == sorted(  # the six accounts of the three removed, no other
        [f"hosting:a{i}" for i in (7, 8, 9)] + [f"admin@a{i}.{ZONE}" for i in (7, 8, 9)])
    with pytest.raises(lc.LifecycleError, match=r"remove 4 of 10 agencies \(40% > 30%\)"):
        lc.decide(reqs[:6], reg, TODAY, CFG)
    d = lc.decide(reqs[:6], reg, TODAY, CFG, allow_large_removal=True)
    assert len(d["archive"]) == 8


def test_removing_a_mailbox_is_not_counted_as_removing_an_agency():
    before = [req(f"a{i}", boxes=("x", "y", "z", "w")) for i in range(2)]
    after = [req(f"a{i}", boxes=("x", "z", "w")) for i in range(2)]
    d = lc.decide(after, register_of(*before), TODAY, CFG)
    assert len(d["archive"]) == 2


def test_settings_come_from_the_inventory_with_defaults():
    s = lc.Settings.from_mapping({"retention_days": "45", "unknown": 1})
    assert s.retention_days == 45 and s.event_warning_days == 30
