"""Issue 9 wired: what the lifecycle decisions become for the roles, the
register, the run report and the naming register (no root, no daemons)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sop import apply, documents, lifecycle, model, names
from sop.register import Register

from .test_documents import (
    assert_markdown_tables_are_rectangular,
    make_run,
    make_settings,
    pdftotext,
)
from .test_lifecycle import ZONE, register_of, req

REPO = Path(__file__).resolve().parents[2]
TODAY = dt.date(2027, 4, 5)
CFG = lifecycle.Settings()
ROOTS = {"mail_root": "/var/mail/vhosts", "web_root": "/srv/www/"}


def full(label, **kw):
    """A request as the validator returns it (enough of it for the model)."""
    r = req(label, **kw)
    r["hosting"] = {"quota": "1M", "quota_bytes": 2**20}
    r["letter"] = {"number": "1", "date": dt.date(2026, 11, 20), "subject": "s"}
    r["contact"] = {"name": "Maria", "nip": "1" * 18, "position": "Kasubag", "phone": "0812"}
    r["mail"]["domain"] = "subdomain"
    r["mail"]["aliases"] = [{"local_part": "info", "address": f"info@{label}.{ZONE}",
                             "to": [f"admin@{label}.{ZONE}"]}]
    for box in r["mail"]["mailboxes"]:
        box.update(local_part=box["address"].split("@")[0], holder="Maria", quota="1M",
                   quota_bytes=2**20)
    return r


# --- decisions ------------------------------------------------------------------


def test_an_archived_account_asked_for_again_is_restored_not_created():
    r = full("dinkes")
    reg = register_of(r, archived={f"admin@dinkes.{ZONE}": "2027-03-20",
                                   "hosting:dinkes": "2027-03-20"})
    d = lifecycle.decide([r], reg, TODAY, CFG)
    assert sorted(d["restore"]) == sorted(["hosting:dinkes", f"admin@dinkes.{ZONE}"])
    assert d["archive"] == d["archived"] == d["purge"] == []


def test_served_requests_carry_their_effective_status():
    reqs = [full("aktif"), full("tunda", status="suspended"), full("acara", ends="2027-03-31"),
            full("usai", ends="2027-02-01")]
    d = lifecycle.decide(reqs, register_of(*reqs), TODAY, CFG)
    status = {r["subdomain"]: r["status"] for r in d["provision"]}
    # The event ended 5 days ago: suspended; the other ended 63 days ago: not served.
    assert status == {"aktif": "active", "tunda": "suspended", "acara": "suspended"}
    assert d["states"]["usai"]["state"] == "expired"


def test_storage_actions_name_the_folders_and_the_dated_archives():
    gone = full("lama")
    keep = full("dinkes", boxes=("admin",))
    before = full("dinkes", boxes=("admin", "kepala"))
    reg = register_of(gone, before, archived={"hosting:lama": "2027-03-01",
                                              f"admin@lama.{ZONE}": "2027-03-20"})
    d = lifecycle.decide([keep], reg, TODAY, CFG, allow_large_removal=True)
    reg["hosting:lama"]["username"] = "w-lama"
    acts = lifecycle.storage_actions(d, reg, TODAY, ROOTS)
    assert acts["mail"]["archive"] == [
        {"name": f"admin@lama.{ZONE}", "path": f"/var/mail/vhosts/lama.{ZONE}/admin",
         "archive": f"/var/mail/vhosts/.archive/admin@lama.{ZONE}-2027-03-20",
         "username": f"admin@lama.{ZONE}"},
        {"name": f"kepala@dinkes.{ZONE}", "path": f"/var/mail/vhosts/dinkes.{ZONE}/kepala",
         "archive": f"/var/mail/vhosts/.archive/kepala@dinkes.{ZONE}-2027-04-05",
         "username": f"kepala@dinkes.{ZONE}"},
    ]
    # 35 days after it was archived, past the 30 of retention: purged, its user removed.
    assert acts["web"]["purge"] == [{"name": "lama", "path": "/srv/www/lama",
                                     "archive": "/srv/www/.archive/lama-2027-03-01",
                                     "username": "w-lama"}]
    assert acts["web"]["remove"] == ["w-lama"] and acts["web"]["lock"] == []


def test_a_database_given_up_is_dumped_beside_the_site_archives_then_purged():
    with_db = full("wp")
    with_db["hosting"]["database"] = True
    kept = full("wp")  # the same request without its database
    reg = register_of(with_db, full("lama"))
    reg["database:wp"]["username"] = "w_wp"
    reg["database:lama"] = {"subdomain": "lama", "username": "w_lama", "kind": "database",
                            "archived": "2027-03-01"}
    d = lifecycle.decide([kept, full("lama")], reg, TODAY, CFG, allow_large_removal=True)
    assert d["archive"] == ["database:wp"] and d["purge"] == ["database:lama"]
    acts = lifecycle.storage_actions(d, reg, TODAY, ROOTS)
    assert acts["web"]["databases"] == {
        "archive": [{"name": "w_wp", "user": "w_wp", "subdomain": "wp",
                     "archive": "/srv/www/.archive/w_wp-2027-04-05.sql"}],
        "restore": [],
        "purge": [{"name": "w_lama", "user": "w_lama", "subdomain": "lama",
                   "archive": "/srv/www/.archive/w_lama-2027-03-01.sql"}]}
    # Nothing of the database among the folders and Unix users of the site.
    assert acts["web"]["archive"] == acts["web"]["purge"] == []
    assert acts["web"]["lock"] == acts["web"]["remove"] == []
    reg["database:wp"]["archived"] = "2027-04-01"
    d = lifecycle.decide([with_db, full("lama")], reg, TODAY, CFG, allow_large_removal=True)
    assert d["restore"] == ["database:wp"]
    acts = lifecycle.storage_actions(d, reg, TODAY, ROOTS)
    assert [i["archive"] for i in acts["web"]["databases"]["restore"]] == [
        "/srv/www/.archive/w_wp-2027-04-01.sql"]


def test_the_lifecycle_date_can_be_set_explicitly_and_is_checked():
    assert lifecycle.today_from("2027-04-05") == TODAY
    assert lifecycle.today_from("") == lifecycle.today_from(None)
    with pytest.raises(lifecycle.LifecycleError, match="not a date"):
        lifecycle.today_from("5 April")


def test_settings_accept_the_templated_threshold():
    assert lifecycle.Settings.from_mapping(
        {"removal_threshold_percent": "30.0"}).removal_threshold_percent == 30


# --- the model: suspended requests ------------------------------------------------


def test_a_suspended_request_keeps_its_accounts_but_refuses_logins():
    active, stopped = full("aktif"), {**full("tunda"), "status": "suspended"}
    hashes = {a["id"]: "$6$h" for a in model.accounts([active, stopped])}
    mail = model.mail_data([active, stopped], hashes)
    login = {m["address"]: m["login"] for m in mail["mailboxes"]}
    assert login == {f"admin@aktif.{ZONE}": True, f"admin@tunda.{ZONE}": False}
    assert mail["suspended"] == [f"admin@tunda.{ZONE}", f"info@tunda.{ZONE}"]
    settings = {"web_root": "/srv/www"}
    hosting = {h["name"]: h["hash"] for h in model.hosting_accounts([active, stopped], hashes,
                                                                    settings)}
    # Locked as usermod -L does: the same hash behind "!", back as it was on resume.
    assert hosting == {"w-aktif": "$6$h", "w-tunda": "!$6$h"}
    sites = {v["name"]: v["suspended"] for v in model.vhosts([active, stopped], settings)}
    assert sites == {"aktif": False, "tunda": True}


def test_the_dovecot_users_file_refuses_logins_of_suspended_mailboxes():
    import jinja2

    text = (REPO / "roles/dovecot/templates/etc/dovecot/users.j2").read_text()
    env = jinja2.Environment(trim_blocks=True, keep_trailing_newline=True)  # noqa: S701
    out = env.from_string(text).render(ansible_managed="x", dovecot_users=[
        {"address": "a@x", "hash": "$6$a", "quota_bytes": 2048, "login": True},
        {"address": "b@x", "hash": "$6$b", "quota_bytes": 2048, "login": False},
        {"address": "c@x", "hash": "$6$c", "quota_bytes": 2048},
    ])
    lines = out.splitlines()[1:]
    assert lines == [
        "a@x:{SHA512-CRYPT}$6$a::::::userdb_quota_rule=*:storage=2K",
        "b@x:{SHA512-CRYPT}!$6$b::::::nologin=y userdb_quota_rule=*:storage=2K",
        "c@x:{SHA512-CRYPT}$6$c::::::userdb_quota_rule=*:storage=2K",
    ]


# --- the register -------------------------------------------------------------------


def test_register_keeps_the_first_archive_date_restores_and_forgets(tmp_path):
    reg = Register(tmp_path / "r.vault", b"pw")
    reg.ensure([{"id": "a@x", "username": "a@x", "kind": "mailbox", "subdomain": "x"},
                {"id": "b@x", "username": "b@x", "kind": "mailbox", "subdomain": "x"}])
    passwords = {k: v["password"] for k, v in reg.accounts.items()}
    assert reg.mark_archived(["a@x", "b@x"], dt.date(2027, 3, 1)) == ["a@x", "b@x"]
    assert reg.mark_archived(["a@x"], dt.date(2027, 3, 9)) == []
    assert reg.accounts["a@x"]["archived"] == "2027-03-01"
    assert reg.restore(["a@x"]) == ["a@x"] and "archived" not in reg.accounts["a@x"]
    assert reg.forget(["b@x", "nobody@x"]) == ["b@x"]
    reg.save()
    again = Register(tmp_path / "r.vault", b"pw")
    assert set(again.accounts) == {"a@x"}
    assert again.accounts["a@x"]["password"] == passwords["a@x"]


# --- what the run reports ---------------------------------------------------------


def _summary():
    gone, keep = full("lama"), full("dinkes", status="suspended")
    reg = register_of(gone, keep, archived={"hosting:lama": "2027-03-01"})
    for entry in reg.values():
        entry["created"] = "2026-11-20"
    d = lifecycle.decide([keep], reg, TODAY, CFG, allow_large_removal=True)
    return [keep], reg, lifecycle.summary(d, reg, TODAY, CFG)


def test_the_summary_lists_archived_purged_and_suspended():
    _, _, life = _summary()
    assert life["suspended"] == ["dinkes"]
    assert [e["id"] for e in life["archived_now"]] == [f"admin@lama.{ZONE}"]
    assert life["archived_now"][0]["purge_after"] == "2027-05-05"
    assert [e["id"] for e in life["purged"]] == ["hosting:lama"]
    json.dumps(life)


def test_the_report_has_a_section_on_suspension_archive_and_purge(tmp_path):
    _, _, life = _summary()
    life["warnings"] = ["Kegiatan Festival (pasola) berakhir 2027-03-31: ..."]
    run = {**make_run(), "lifecycle": life}
    paths = documents.render_report(run, make_settings(), tmp_path)
    md = paths["md"].read_text()
    assert "## F. Status Layanan" in md and "## G. Catatan" in md
    assert f"| Diarsipkan | admin@lama.{ZONE} | 2027-04-05 | dihapus permanen mulai 2027-05-05 |" \
        in md
    assert "| Dihapus permanen | hosting:lama |" in md
    assert "| Ditangguhkan | dinkes |" in md
    assert "Peringatan: Kegiatan Festival" in md
    assert_markdown_tables_are_rectangular(md)
    pdf = pdftotext(paths["pdf"])
    assert "F. Status Layanan (Penangguhan, Arsip, Penghapusan)" in pdf
    assert "Diarsipkan" in pdf and "hosting:lama" in pdf and "Ditangguhkan" in pdf


def test_the_run_record_collects_the_decision_and_what_the_hosts_did():
    class Result:
        events = [
            {"event": "runner_on_ok", "event_data": {"task_action": "sop_lifecycle", "res": {
                "summary": {"today": "2027-04-05", "purged": []},
                "provision": [{"subdomain": "dinkes"}]}}},
            {"event": "runner_on_ok", "event_data": {"res": {"ansible_facts": {
                "storage_archive_changes": {"archived": ["a@x"], "restored": [], "purged": [],
                                            "purged_bytes": 0}}}}},
            {"event": "runner_on_ok", "event_data": {"res": {"ansible_facts": {
                "storage_archive_changes": {"archived": [], "restored": ["w"], "purged": ["p"],
                                            "purged_bytes": 5}}}}},
        ]

    life = apply._lifecycle_from_events(Result())
    assert life["served"] == ["dinkes"]
    assert life["done"] == {"archived": ["a@x"], "restored": ["w"], "purged": ["p"]}
    reqs = [{"subdomain": "dinkes"}, {"subdomain": "usai"}]
    assert apply._served(reqs, life) == [{"subdomain": "dinkes", "status": "active"}]
    assert apply._served(reqs, {}) == reqs


# --- the naming register (SOP record 3) ---------------------------------------------


def test_the_naming_register_lists_every_name_with_status_and_dates():
    reqs, reg, life = _summary()
    previous = {"names": [{"subdomain": "lama", "agency": "Kantor Lama"}]}
    data = names.build(reqs, reg, life, previous)
    rows = {(r["name"], r["status"]) for r in data["names"]}
    assert (f"dinkes.{ZONE}", "suspended") in rows
    assert (f"admin@dinkes.{ZONE}", "suspended") in rows
    assert (f"info@dinkes.{ZONE}", "suspended") in rows
    assert ("w-dinkes", "suspended") in rows
    archived = next(r for r in data["names"] if r["name"] == f"admin@lama.{ZONE}")
    assert archived["status"] == "archived" and archived["agency"] == "Kantor Lama"
    assert archived["archived"] == "2027-04-05" and archived["purge_after"] == "2027-05-05"
    purged = next(r for r in data["names"] if r["status"] == "purged")
    assert purged["purged"] == "2027-04-05" and purged["archived"] == "2027-03-01"
    assert [r["status"] for r in data["names"] if r["name"] == "hosting:lama"] == ["purged"]
    md = names.render_markdown(data, ZONE)
    assert "# DAFTAR PENAMAAN SUBDOMAIN DAN EMAIL INSTANSI" in md
    assert f"| admin@lama.{ZONE} | kotak surat | Kantor Lama | diarsipkan | 2026-11-20 | - |" \
        " 2027-04-05 | 2027-05-05 |" in md
    assert "dihapus permanen" in md and "ditangguhkan" in md
    assert_markdown_tables_are_rectangular(md)
    assert "password" not in json.dumps(data)


def test_sop_names_prints_the_register_of_the_lab_examples(tmp_path):
    env = {**os.environ, "SOP_VAULT_PASSWORD": "uji", "SOP_STATE_DIR": str(tmp_path),
           "PYTHONPATH": str(REPO / "scripts")}
    inv = tmp_path / "inventory"
    import shutil

    shutil.copytree(REPO / "inventory" / "lab", inv)
    (inv / "group_vars" / "all" / "zz-names.yml").write_text(
        f"sop_register_file: {tmp_path}/register.vault.yml\nsop_records_dir: {tmp_path}\n")
    out = subprocess.run([sys.executable, "-m", "sop.cli", "-i", str(inv), "names"],
                         capture_output=True, text=True, env={**env, "SOP_TODAY": "2027-04-05"},
                         cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert f"| pasola.{ZONE} | subdomain | Festival Pasola 2027 (PASOLA) | ditangguhkan |" \
        in out.stdout
    assert f"| dinkes.{ZONE} | subdomain | Dinas Kesehatan (DINKES) | aktif |" in out.stdout


def test_the_plan_shows_a_suspension_as_a_change_of_the_request():
    from sop import plan

    before = full("dinkes")
    changes = plan._field_changes(before, {**before, "status": "suspended"})
    assert changes == [{"field": "status", "before": "active", "after": "suspended"}]
