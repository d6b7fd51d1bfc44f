"""Names that cannot be misused (issue 16, items 3 and 4).

On the parent domain no request may take an address that controls the whole
zone (RFC 2142's role addresses, the CA/Browser Forum's domain-control
addresses, the mail system's own) or one the inventory itself uses; no label
may be a name of the zone itself (base records, name servers, the hosts the
inventory names); and no two labels may get the same hosting account.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sop.config import load_settings
from sop.model import hosting_username
from sop.validate import PARENT_RESERVED_LOCAL_PARTS, inventory_policy, validate_paths

from .test_validate import REPO, TODAY, ZONE, check, dump, parent_request, request, write

LAB_POLICY = load_settings(REPO / "inventory" / "lab").policy


def problems_of(tmp_path: Path, doc: dict, name: str, policy: dict | None = None):
    return check(tmp_path, doc, name, policy or LAB_POLICY)[1]


# --- local parts on the parent domain -------------------------------------------------

@pytest.mark.parametrize("local_part", [
    "admin", "administrator", "webmaster", "hostmaster", "postmaster",  # CA/B Forum
    "info", "sales", "support", "abuse", "noc", "security", "marketing",  # RFC 2142
    "mailer-daemon", "root",
    "dmarc", "diskominfo",  # the inventory's DMARC report address, the letterhead's email
])
def test_a_zone_controlling_address_on_the_parent_domain_is_refused(tmp_path, local_part):
    problems = problems_of(tmp_path, parent_request("dinkes", local_part), "dinkes.yml")
    assert len(problems) == 1, problems
    problem = problems[0]
    assert problem.file == str(tmp_path / "dinkes.yml")
    assert problem.field == "mail.mailboxes[0].local_part"
    assert problem.line is not None
    # The contract's special local parts are refused on any domain, in its words.
    assert "reserved" in problem.message


def test_a_reserved_local_part_as_a_parent_alias_is_refused_too(tmp_path):
    doc = parent_request("dinkes", "dinkes", [{"local_part": "administrator", "to": ["dinkes"]}])
    (problem,) = problems_of(tmp_path, doc, "dinkes.yml")
    assert problem.field == "mail.aliases[0].local_part"


def test_the_same_local_parts_on_the_agencys_own_subdomain_are_fine(tmp_path):
    """admin@dinkes.<zone> controls dinkes.<zone> only: the agency's own."""
    requests, problems = check(tmp_path, request(), "dinkes.yml", LAB_POLICY)
    assert problems == [] and requests[0]["mail"]["mailboxes"][0]["local_part"] == "admin"


def test_an_ordinary_parent_address_is_fine(tmp_path):
    assert problems_of(tmp_path, parent_request("dinkes", "dinkes"), "dinkes.yml") == []


def test_every_address_the_inventory_uses_is_reserved():
    settings = load_settings(REPO / "inventory" / "lab")
    used = {settings.get("sop_hostmaster"), settings.get("sop_mail_dns")["dmarc_rua"],
            settings.get("sop_letterhead")["email"]}
    assert all(address.endswith("@" + ZONE) for address in used)
    reserved = set(LAB_POLICY["reserved_local_parts"]) | PARENT_RESERVED_LOCAL_PARTS
    assert {address.split("@")[0] for address in used} <= reserved


def test_an_address_anywhere_in_the_named_inventory_variables_is_reserved():
    policy = inventory_policy({
        "sop_zone": ZONE,
        "sop_policy": {"reserved_labels": ["lab"]},
        "sop_letterhead": {"email": f"Kantor.Kominfo@{ZONE}"},
        "sop_mail_dns": {"dmarc_rua": f"mailto:laporan-dmarc@{ZONE}"},
        "sop_administrator": {"email": "someone@gmail.com"},
        "sop_sftp": {"host": f"sftp.{ZONE}"},
        "sop_nameservers": [{"name": "ns7"}, {"name": f"dns3.{ZONE}."}],
        "sop_zone_base_records": [{"name": "@"}, {"name": "portal"}],
        "unrelated_variable": f"secret@{ZONE}",
    })
    assert policy["zone"] == ZONE
    assert policy["reserved_local_parts"] == ["kantor.kominfo", "laporan-dmarc"]
    assert policy["reserved_labels"] == ["dns3", "lab", "ns7", "portal", "sftp"]


# --- labels -------------------------------------------------------------------------

@pytest.mark.parametrize("label", ["web", "mail", "www", "ns1", "ns2", "ns3", "ns10"])
def test_a_name_of_the_zone_itself_is_refused_as_a_label(tmp_path, label):
    problems = problems_of(tmp_path, request(subdomain=label), f"{label}.yml")
    assert [(p.file, p.field) for p in problems] == [(str(tmp_path / f"{label}.yml"),
                                                      "subdomain")]
    assert "reserve" in problems[0].message


def test_the_lab_inventory_reserves_its_base_records_and_host_names():
    assert {"web", "mail", "www", "ns1"} <= set(LAB_POLICY["reserved_labels"])


LONG = "dinas-pemberdayaan-masyarakat-dan-desa-kabupaten-sumba-barat"  # 60 characters


def test_a_crafted_label_cannot_take_a_long_labels_hosting_account(tmp_path):
    assert len(LONG) == 60
    crafted = hosting_username(LONG).removeprefix("w-")
    assert len(crafted) <= 30 and hosting_username(crafted) == hosting_username(LONG)
    problems = problems_of(tmp_path, request(subdomain=crafted), f"{crafted}.yml")
    assert [p.field for p in problems] == ["subdomain"]
    assert "shortened hosting account name" in problems[0].message


def test_labels_giving_the_same_hosting_account_are_refused_as_a_set(tmp_path, monkeypatch):
    """Whatever the shape: two labels, one account name, both files named."""
    import sop.validate

    monkeypatch.setattr(sop.validate, "hosting_username", lambda label: "w-same")
    for label in ("dinkes", "dinsos"):
        write(tmp_path, f"{label}.yml", dump(request(subdomain=label)))
    requests, problems = validate_paths([tmp_path], LAB_POLICY, today=TODAY)
    assert requests == []
    assert sorted((Path(p.file).name, p.field) for p in problems) == [
        ("dinkes.yml", "subdomain"), ("dinsos.yml", "subdomain")]
    assert all("hosting account w-same" in p.message for p in problems)


def test_a_long_label_alone_is_fine(tmp_path):
    assert problems_of(tmp_path, request(subdomain=LONG), f"{LONG}.yml") == []


def test_the_message_names_the_address_and_says_why(tmp_path):
    (problem,) = problems_of(tmp_path, parent_request("dinkes", "administrator"), "dinkes.yml")
    assert problem.message.startswith(f"administrator@{ZONE} is reserved on the parent domain")
    assert "certificate authorities" in problem.message
    assert str(problem).startswith(f"{tmp_path / 'dinkes.yml'}:")


# --- sop reset-password and a running apply (item 8) ----------------------------------

def test_reset_password_waits_for_no_apply_and_changes_nothing_meanwhile(tmp_path, monkeypatch):
    """An apply running meanwhile would write its own copy of the register over
    the new password: reset-password takes the apply lock, or refuses."""
    import shutil

    import yaml

    from sop import cli
    from sop.apply import apply_lock
    from sop.register import Register

    inventory = tmp_path / "inventory"
    shutil.copytree(REPO / "inventory" / "lab", inventory)
    (tmp_path / "pw").write_text("kata-sandi-uji\n")
    (inventory / "group_vars" / "all" / "zz-test.yml").write_text(yaml.safe_dump({
        "sop_register_file": str(tmp_path / "register.vault.yml"),
        "sop_vault_password_file": str(tmp_path / "pw"),
        "sop_state_dir": str(tmp_path / "state"),
    }))
    monkeypatch.delenv("SOP_STATE_DIR", raising=False)
    register = Register(tmp_path / "register.vault.yml", b"kata-sandi-uji")
    register.ensure([{"id": "hosting:dinkes", "username": "w-dinkes", "kind": "hosting",
                      "subdomain": "dinkes"}])
    register.save()
    before = (tmp_path / "register.vault.yml").read_bytes()
    with apply_lock(tmp_path / "state"):
        assert cli.main(["-i", str(inventory), "reset-password", "dinkes"]) == 2
    assert (tmp_path / "register.vault.yml").read_bytes() == before
    # With no apply running, it goes ahead.
    assert cli.main(["-i", str(inventory), "reset-password", "dinkes"]) == 0
    assert (tmp_path / "register.vault.yml").read_bytes() != before


# --- an archived label or address and another agency (item 7) --------------------------

def _lifecycle_request(label: str, agency: str, parent_box: str | None = None) -> dict:
    from .test_lifecycle import req

    r = req(label)
    r["agency"]["name"] = agency
    if parent_box:
        r["mail"] = {"address_domain": ZONE, "mailboxes": [{"address": f"{parent_box}@{ZONE}"}]}
    return r


def _register_with(reqs, archived: dict[str, str]) -> dict:
    from sop.model import accounts

    out = {a["id"]: {"subdomain": a["subdomain"], "agency": a["agency"]} for a in accounts(reqs)}
    for account_id, day in archived.items():
        out[account_id]["archived"] = day
    return out


def test_an_archived_label_is_not_handed_to_another_agency():
    import datetime as dt

    from sop import lifecycle as lc

    old = _lifecycle_request("dinkes", "Dinas Kesehatan")
    reg = _register_with([old], {"hosting:dinkes": "2026-11-20",
                                 f"admin@dinkes.{ZONE}": "2026-11-20"})
    other = _lifecycle_request("dinkes", "Dinas Komunikasi dan Informatika")
    with pytest.raises(lc.LifecycleError) as refused:
        lc.decide([other], reg, dt.date(2026, 11, 30), lc.Settings())
    message = str(refused.value)
    assert "dinas kesehatan" in message and "2026-11-20" in message
    assert "Nothing was changed" in message and "Choose another subdomain" in message
    # The agency that held it gets it back (case and spacing aside).
    same = _lifecycle_request("dinkes", "  Dinas   KESEHATAN ")
    decision = lc.decide([same], reg, dt.date(2026, 11, 30), lc.Settings())
    assert sorted(decision["restore"]) == ["admin@dinkes." + ZONE, "hosting:dinkes"]


def test_an_archived_parent_address_is_not_handed_to_another_agency():
    import datetime as dt

    from sop import lifecycle as lc

    old = _lifecycle_request("bappeda", "Bappeda", parent_box="sekretariat")
    reg = _register_with([old], {f"sekretariat@{ZONE}": "2026-11-25"})
    newcomer = _lifecycle_request("dinsos", "Dinas Sosial", parent_box="sekretariat")
    with pytest.raises(lc.LifecycleError, match=f"sekretariat@{ZONE}"):
        lc.decide([old | {"mail": None}, newcomer], reg, dt.date(2026, 11, 30), lc.Settings())


def test_the_register_remembers_the_agency_and_fills_it_in_for_older_entries(tmp_path):
    from sop.model import accounts
    from sop.register import Register

    wanted = accounts([_lifecycle_request("dinkes", "Dinas Kesehatan")])
    reg = Register(tmp_path / "r.yml", b"pw")
    reg.ensure(wanted)
    assert {e["agency"] for e in reg.accounts.values()} == {"dinas kesehatan"}
    for entry in reg.accounts.values():  # a register from before the agency was kept
        del entry["agency"]
    assert reg.ensure(wanted) == [] and reg.changed_agency
    assert {e["agency"] for e in reg.accounts.values()} == {"dinas kesehatan"}


# --- a restore is recorded only once the data is back (item 6) ---------------------------

def test_a_restore_is_recorded_in_the_register_only_after_the_data_moved_back():
    import yaml

    plays = yaml.safe_load((REPO / "playbooks" / "site.yml").read_text())
    names = [p.get("name", "") for p in plays]

    def register_tasks(play):
        return [t["sop_register"] for t in play.get("tasks", []) if "sop_register" in t]

    step5 = next(i for i, n in enumerate(names) if n.startswith("SOP step 5"))
    assert all("restore" not in task for task in register_tasks(plays[step5]))
    restores = [i for i, play in enumerate(plays)
                if any("restore" in task for task in register_tasks(play))]
    data_back = [i for i, play in enumerate(plays) if "SOP step 4" in play.get("name", "")]
    assert restores and data_back and min(restores) > max(data_back), (restores, data_back)


# --- the removal guard counts accounts too (item 8) ----------------------------------------

def test_emptying_every_agencys_mailboxes_is_stopped_like_removing_agencies():
    import datetime as dt

    from sop import lifecycle as lc

    from .test_lifecycle import register_of, req

    before = [req(label, boxes=("admin", "kepala")) for label in ("dinkes", "dinsos")] \
        + [req(label, boxes=("admin",)) for label in ("bappeda", "dukcapil")]
    after = [req(r["subdomain"], boxes=()) for r in before]  # 8 accounts -> 4 (hosting only)
    reg = register_of(*before)
    with pytest.raises(lc.LifecycleError, match=r"remove 6 of 10 accounts"):
        lc.decide(after, reg, dt.date(2026, 11, 30), lc.Settings())
    decision = lc.decide(after, reg, dt.date(2026, 11, 30), lc.Settings(),
                         allow_large_removal=True)
    assert len(decision["archive"]) == 6
    # One mailbox of ten is an ordinary change.
    one_less = [req("dinkes", boxes=("admin",))] + before[1:]
    assert len(lc.decide(one_less, reg, dt.date(2026, 11, 30), lc.Settings())["archive"]) == 1
