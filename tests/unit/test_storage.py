"""Storage: the step 3 check's arithmetic, the hosting data record, supervision and forecast."""

from __future__ import annotations

import importlib.util
import json
import random
import stat
import subprocess
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sop import chart, cli, documents, storage

REPO = Path(__file__).resolve().parents[2]
GiB = 2**30
MiB = 2**20


def _load_role_filter():
    path = REPO / "roles/storage_check/filter_plugins/storage_check.py"
    spec = importlib.util.spec_from_file_location("storage_check", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


check = _load_role_filter()

MOUNTS = {
    "/": {"size_total": 100 * GiB, "size_available": 40 * GiB},
    "/srv": {"size_total": 10 * GiB, "size_available": 5 * GiB},
}


def du(root: str, sizes: dict[str, int]) -> dict:
    """One `du -b --max-depth=N root` result as the command module registers it."""
    return {"item": {"path": root}, "rc": 0,
            "stdout": "\n".join(f"{n}\t{p}" for p, n in sizes.items())}


def web(*accounts: tuple[str, int]) -> dict:
    return {"path": "/srv/www", "kind": "web",
            "accounts": [{"id": f"hosting:{a}", "path": f"/srv/www/{a}", "quota_bytes": q}
                         for a, q in accounts]}


# --- The check (role filter) ------------------------------------------------------


def test_headroom_groups_paths_by_file_system():
    paths = [
        {"path": "/var/mail/vhosts", "kind": "mail",
         "accounts": [{"id": "a@x.go.id", "path": "/var/mail/vhosts/x.go.id/a",
                       "quota_bytes": GiB}]},
        web(("dinkes", GiB)),
        {"path": "/var/www", "kind": "web",
         "accounts": [{"id": "hosting:b", "path": "/var/www/b", "quota_bytes": GiB}]},
    ]
    out = check.storage_check_headroom(paths, MOUNTS, [], 15, "lab")
    by = {e["mount"]: e for e in out}
    assert set(by) == {"/", "/srv"}
    assert by["/"]["allocated_bytes"] == 2 * GiB and by["/"]["ok"]
    assert by["/"]["paths"] == ["/var/mail/vhosts", "/var/www"]
    assert by["/srv"]["paths"] == ["/srv/www"]


def test_refusal_message_names_host_path_need_and_availability():
    (entry,) = check.storage_check_headroom([web(("dinkes", 4 * GiB))], MOUNTS, [], 15, "srv1")
    # 5 GiB free - 4 GiB of quota = 1 GiB < 15% of 10 GiB
    assert not entry["ok"]
    assert entry["headroom_bytes"] == GiB and entry["reserve_bytes"] == int(1.5 * GiB)
    msg = entry["message"]
    assert msg.startswith("srv1: /srv/www on /srv: needs 5.50 GiB")
    assert "available 5.00 GiB" in msg and "short by 512.00 MiB" in msg


def test_data_already_inside_quotas_is_not_counted_twice():
    sizes = {"/srv/www/dinkes": 3 * GiB, "/srv/www": 3 * GiB}
    (entry,) = check.storage_check_headroom([web(("dinkes", 4 * GiB))], MOUNTS,
                                            [du("/srv/www", sizes)], 15)
    assert entry["outstanding_bytes"] == GiB and entry["ok"]
    assert entry["used_bytes"] == 3 * GiB


def test_an_account_over_its_quota_frees_no_room_for_another():
    # a holds 3 GiB against a 1 GiB quota; b holds nothing of its 4 GiB.
    sizes = {"/srv/www/a": 3 * GiB, "/srv/www/b": 0, "/srv/www": 3 * GiB}
    (entry,) = check.storage_check_headroom([web(("a", GiB), ("b", 4 * GiB))], MOUNTS,
                                            [du("/srv/www", sizes)], 15)
    # b may still grow by 4 GiB (not (1 + 4) - 3 = 2 GiB): 5 - 4 = 1 GiB < 1.5 GiB reserve.
    assert entry["outstanding_bytes"] == 4 * GiB
    assert not entry["ok"]


def test_data_outside_every_account_is_in_no_quota():
    sizes = {"/srv/www/a": 0, "/srv/www": 2 * GiB}  # e.g. old sites left in the folder
    (entry,) = check.storage_check_headroom([web(("a", GiB))], MOUNTS,
                                            [du("/srv/www", sizes)], 15)
    assert entry["outstanding_bytes"] == GiB and entry["used_bytes"] == 2 * GiB


def test_reserve_given_as_text_by_extra_vars_is_a_number():
    (entry,) = check.storage_check_headroom([web(("a", GiB))], MOUNTS, [], "100")
    assert entry["reserve_percent"] == 100 and not entry["ok"]


def test_a_path_on_no_mount_is_an_error():
    with pytest.raises(Exception, match="no mounted file system holds /x"):
        check.storage_check_headroom([{"path": "/x", "accounts": []}],
                                     {"/srv": MOUNTS["/srv"]}, [], 15)


def test_du_depth_reaches_every_account_folder():
    assert check.storage_check_depth(web(("a", 1))) == 1
    mail = {"path": "/var/mail/vhosts/", "accounts": [
        {"id": "a@x", "path": "/var/mail/vhosts/x/a", "quota_bytes": 1}]}
    assert check.storage_check_depth(mail) == 2
    assert check.storage_check_depth({"path": "/srv/www", "accounts": []}) == 0
    with pytest.raises(Exception, match="not under"):
        check.storage_check_depth({"path": "/srv/www", "accounts": [
            {"id": "x", "path": "/etc", "quota_bytes": 1}]})


def test_mailbox_usage_is_dovecots_figure_when_dovecot_answers():
    paths = [{"path": "/m", "kind": "mail", "accounts": [
        {"id": "a@x.go.id", "path": "/m/x.go.id/a", "quota_bytes": 100 * MiB},
        {"id": "b@x.go.id", "path": "/m/x.go.id/b", "quota_bytes": 100 * MiB}]},
        web(("w", GiB))]
    results = [du("/m", {"/m/x.go.id/a": 5 * MiB + 4096, "/m/x.go.id/b": 7000, "/m": 0}),
               du("/srv/www", {"/srv/www/w": 123, "/srv/www": 123})]
    dovecot = {"rc": 0, "stdout": json.dumps([
        {"username": "A@x.go.id", "root": "Kuota", "type": "STORAGE", "value": "5120",
         "limit": "102400", "percent": "5"},
        {"username": "a@x.go.id", "root": "Kuota", "type": "MESSAGE", "value": "9",
         "limit": "-", "percent": "0"}])}
    usage = {u["id"]: u for u in check.storage_check_usage(paths, results, dovecot)}
    assert usage["a@x.go.id"]["used_bytes"] == 5 * MiB
    assert usage["a@x.go.id"]["disk_bytes"] == 5 * MiB + 4096
    assert usage["a@x.go.id"]["source"] == "dovecot"
    # Not known to Dovecot (not created yet): the bytes on disk.
    assert (usage["b@x.go.id"]["used_bytes"], usage["b@x.go.id"]["source"]) == (7000, "du")
    assert (usage["hosting:w"]["used_bytes"], usage["hosting:w"]["source"]) == (123, "du")
    # Dovecot not running: du for every mailbox.
    failed = check.storage_check_usage(paths, results, {"rc": 75, "stdout": ""})
    assert {u["source"] for u in failed} == {"du"}


# --- The record -------------------------------------------------------------------


def request(label: str, hosting: int | None, boxes: list[tuple[str, int]]) -> dict:
    domain = f"{label}.sumbabaratdayakab.go.id"
    return {
        "subdomain": label,
        "agency": {"name": f"Dinas {label.title()}", "abbreviation": label.upper()},
        "contact": {"name": f"Pengelola {label}", "nip": "1" * 18, "position": "Kasubbag",
                    "phone": "0812-0000-0000"},
        "hosting": {"quota_bytes": hosting} if hosting else None,
        "mail": {"mailboxes": [{"address": f"{lp}@{domain}", "holder": f"Pemegang {lp}",
                                "quota_bytes": q} for lp, q in boxes]} if boxes else None,
    }


def test_storage_paths_follow_the_roles_layout():
    reqs = [request("dinkes", 512 * MiB, [("Admin", 256 * MiB)]), request("dukcapil", None,
                                                                          [("layanan", MiB)])]
    mail, web_ = storage.storage_paths(reqs, "/var/mail/vhosts/", "/srv/www")
    assert mail["path"] == "/var/mail/vhosts" and mail["kind"] == "mail"
    assert mail["accounts"][0] == {
        "id": "admin@dinkes.sumbabaratdayakab.go.id",
        "path": "/var/mail/vhosts/dinkes.sumbabaratdayakab.go.id/admin",
        "quota_bytes": 256 * MiB}
    assert web_["accounts"] == [{"id": "hosting:dinkes", "path": "/srv/www/dinkes",
                                 "quota_bytes": 512 * MiB}]


def usage_row(account_id, used, host="lab"):
    return {"host": host, "id": account_id, "used_bytes": used, "disk_bytes": used,
            "source": "du", "path": "/x"}


def test_record_keeps_mounts_and_agencies_at_the_top_level():
    reqs = [request("dinkes", 100 * MiB, [("admin", 100 * MiB), ("kepala", 100 * MiB)])]
    usage = [usage_row("hosting:dinkes", 85 * MiB),
             usage_row("admin@dinkes.sumbabaratdayakab.go.id", 10 * MiB)]
    mounts = [{"host": "lab", "mount": "/", "paths": ["/srv/www"], "capacity_bytes": 10,
               "free_bytes": 5, "allocated_bytes": 3, "used_bytes": 1, "outstanding_bytes": 2,
               "reserve_percent": 15, "reserve_bytes": 1, "headroom_bytes": 3, "ok": True,
               "message": "m"}]
    rec = storage.build_record(run_id="R1", taken="2026-11-30T00:00:00+00:00",
                               inventory="inventory/lab", status="ok", check_mode=False,
                               overcommit=True, reserve_percent=15, warn_percent=80,
                               requests=reqs, mounts=mounts, usage=usage)
    assert rec["overcommit"] is True and rec["overcommitted"] == []
    for key in ("host", "mount", "paths", "capacity_bytes", "free_bytes", "allocated_bytes",
                "used_bytes"):
        assert key in rec["mounts"][0]
    (agency,) = rec["agencies"]
    assert agency["contact"] == {"name": "Pengelola dinkes", "position": "Kasubbag",
                                 "phone": "0812-0000-0000"}
    by = {a["id"]: a for a in agency["accounts"]}
    assert by["hosting:dinkes"]["percent"] == 85.0 and by["hosting:dinkes"]["name"] == "w-dinkes"
    assert by["kepala@dinkes.sumbabaratdayakab.go.id"]["used_bytes"] is None  # not measured
    assert agency["quota_bytes"] == 300 * MiB and agency["used_bytes"] == 95 * MiB


def test_a_sites_database_counts_in_its_use_and_can_put_it_under_supervision():
    reqs = [request("wp", 100 * MiB, []), request("statis", 100 * MiB, [])]
    reqs[0]["hosting"]["database"] = True
    events = [{"event_data": {"host": "lab", "res": {"ansible_facts": {
        "storage_check_usage": [usage_row("hosting:wp", 50 * MiB, host=None),
                                usage_row("hosting:statis", 50 * MiB, host=None)],
        "storage_check_database_sizes": [{"name": "w_wp", "used_bytes": 40 * MiB},
                                         {"name": "w_statis", "used_bytes": 99 * MiB}]}}}}]
    mounts, usage = storage.facts_from_events(events)
    rec = storage.build_record(run_id="R", taken="2026-11-30T00:00:00+00:00", inventory="",
                               status="ok", check_mode=False, overcommit=False,
                               reserve_percent=15, warn_percent=80, requests=reqs,
                               mounts=mounts, usage=usage)
    wp, statis = ({a["id"]: a for a in ag["accounts"]} for ag in rec["agencies"])
    assert wp["hosting:wp"]["database_bytes"] == 40 * MiB
    assert wp["hosting:wp"]["used_bytes"] == 90 * MiB and wp["hosting:wp"]["percent"] == 90.0
    # A site without a database is not charged for one of the same name.
    assert "database_bytes" not in statis["hosting:statis"]
    assert statis["hosting:statis"]["used_bytes"] == 50 * MiB
    assert [a["subdomain"] for a in storage.supervision(rec, 80)] == ["wp"]
    role = _load_role_filter()
    rows = {"stdout": f"w_wp\t{40 * MiB}\nmysql\t123\nw_lain\t\n"}
    assert role.storage_check_database_sizes(["w_wp", "w_lain"], rows) == [
        {"name": "w_wp", "used_bytes": 40 * MiB}]
    assert role.storage_check_database_sizes(["w_wp"], {"stdout": "", "rc": 1}) == []


def test_supervision_lists_agencies_at_or_above_the_share_with_their_contact():
    reqs = [request("a", 100 * MiB, []), request("b", 100 * MiB, [("x", 1000)]),
            request("c", 1000, [])]
    usage = [usage_row("hosting:a", 80 * MiB),          # exactly 80 %: listed
             usage_row("hosting:b", 80 * MiB - 1),      # just below: not for hosting...
             usage_row("x@b.sumbabaratdayakab.go.id", 990),  # ...but its mailbox is 99 %
             usage_row("hosting:c", 5000)]              # 500 %: first
    rec = storage.build_record(run_id="R", taken="2026-11-30T00:00:00+00:00", inventory="",
                               status="ok", check_mode=False, overcommit=False,
                               reserve_percent=15, warn_percent=80, requests=reqs, mounts=[],
                               usage=usage)
    listed = storage.supervision(rec, 80)
    assert [a["subdomain"] for a in listed] == ["c", "b", "a"]
    assert [acc["kind"] for acc in listed[1]["accounts"]] == ["mailbox"]
    assert listed[2]["contact"]["name"] == "Pengelola a"
    assert listed[2]["accounts"][0]["percent"] == 80.0
    assert storage.supervision(rec, 99.5)[0]["subdomain"] == "c"
    assert [a["subdomain"] for a in storage.supervision(rec, 99)] == ["c", "b"]


def test_records_are_written_privately_and_read_back_in_time_order(tmp_path, capsys):
    for run_id, taken in (("20261202T000000Z", "2026-12-02T00:00:00+00:00"),
                          ("20261201T000000Z", "2026-12-01T00:00:00+00:00")):
        path = storage.write_record(tmp_path, {"run_id": run_id, "taken": taken, "mounts": []})
        assert path == tmp_path / "storage" / f"{run_id}.json"
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
    (tmp_path / "storage" / "20261203T000000Z.json").write_text("{broken")
    history = storage.load_history(tmp_path)
    assert [r["run_id"] for r in history] == ["20261201T000000Z", "20261202T000000Z"]
    assert "skipping unreadable storage record" in capsys.readouterr().err
    assert storage.load_history(tmp_path / "none") == []


# --- Forecast -----------------------------------------------------------------------


T0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)


def history(used: list[float], step: timedelta = timedelta(days=1), capacity=100 * GiB,
            reserve=15 * GiB, allocated=30 * GiB, host="srv1", mount="/srv") -> list[dict]:
    caps = capacity if isinstance(capacity, list) else [capacity] * len(used)
    return [{"run_id": f"R{i}", "taken": (T0 + i * step).isoformat(),
             "mounts": [{"host": host, "mount": mount, "paths": ["/srv/www"],
                         "capacity_bytes": caps[i], "free_bytes": int(caps[i] - u),
                         "allocated_bytes": allocated, "used_bytes": int(u // 2),
                         "reserve_bytes": reserve}]}
            for i, u in enumerate(used)]


def test_least_squares_recovers_a_line():
    slope, intercept = storage.least_squares([0, 1, 2, 3], [1, 3, 5, 7])
    assert (slope, intercept) == (2, 1)
    with pytest.raises(ValueError):
        storage.least_squares([1, 1], [0, 1])


def test_steady_growth_fills_on_the_right_day():
    # 50 GiB used, +1 GiB a day for 10 days: 60 GiB used, 40 GiB free at the last record.
    (f,) = storage.forecast(history([50 * GiB + i * GiB for i in range(11)]))
    assert f["status"] == "growth"
    assert f["bytes_per_day"] == pytest.approx(GiB, rel=1e-9)
    assert f["days_to_full"] == 40.0
    last = T0 + timedelta(days=10)
    assert f["full_date"] == (last + timedelta(days=40) + timedelta(hours=8)).date().isoformat()
    assert f["days_to_reserve"] == 25.0  # (40 - 15) GiB at 1 GiB a day
    assert f["full_date"] == "2026-12-21"
    assert "penuh sekitar 21 Desember 2026" in f["text"] and "±40 hari" in f["text"]


def test_noise_around_a_trend_still_gives_the_trend():
    rng = random.Random(7)
    used = [20 * GiB + i * 0.5 * GiB + rng.uniform(-0.2, 0.2) * GiB for i in range(60)]
    (f,) = storage.forecast(history(used))
    assert f["bytes_per_day"] == pytest.approx(0.5 * GiB, rel=0.05)
    assert f["days_to_full"] == pytest.approx((100 * GiB - used[-1]) / (0.5 * GiB), rel=0.06)


def test_adding_a_disk_is_not_read_as_shrinking_use():
    caps = [100 * GiB] * 5 + [200 * GiB] * 5
    (f,) = storage.forecast(history([10 * GiB + i * GiB for i in range(10)], capacity=caps))
    assert f["status"] == "growth" and f["bytes_per_day"] == pytest.approx(GiB)
    assert f["days_to_full"] == pytest.approx((200 - 19), abs=0.1)


def test_flat_or_falling_use_says_no_growth_plainly():
    for used in ([30 * GiB] * 5, [30 * GiB - i * GiB for i in range(5)]):
        (f,) = storage.forecast(history(used))
        assert f["status"] == "no_growth" and f["full_date"] is None
        assert f["text"].startswith("Tidak ada pertumbuhan")


def test_too_little_history_says_so_plainly():
    (f,) = storage.forecast(history([1 * GiB, 2 * GiB]))
    assert f["status"] == "insufficient_history" and f["days_to_full"] is None
    assert "Riwayat belum cukup" in f["text"] and "tersedia 2 catatan" in f["text"]
    # Many records, but all within an hour: no trend to speak of.
    (f,) = storage.forecast(history([i * GiB for i in range(6)], step=timedelta(minutes=10)))
    assert f["status"] == "insufficient_history"


def test_only_the_recent_window_is_fitted():
    # Fast growth long ago, flat for the last 100 days.
    used = [i * 5 * GiB for i in range(10)] + [45 * GiB] * 100
    (f,) = storage.forecast(history(used))
    assert f["status"] == "no_growth" and f["records"] == 91
    (g,) = storage.forecast(history(used), window_days=200)
    assert g["status"] == "growth"


def test_each_host_and_mount_gets_its_own_forecast():
    h = history([i * GiB for i in range(5)])
    for rec, extra in zip(h, history([GiB] * 5, host="srv2", mount="/data"), strict=True):
        rec["mounts"] += extra["mounts"]
    out = {(f["host"], f["mount"]): f["status"] for f in storage.forecast(h)}
    assert out == {("srv1", "/srv"): "growth", ("srv2", "/data"): "no_growth"}


# --- Chart ----------------------------------------------------------------------------


def _svg(entry) -> ET.Element:
    # Parsing our own output: it must be well-formed XML.
    return ET.fromstring(chart.chart_svg(entry))  # noqa: S314


NS = "{http://www.w3.org/2000/svg}"


def test_chart_draws_capacity_allocation_use_and_the_forecast():
    (f,) = storage.forecast(history([50 * GiB + i * GiB for i in range(11)]))
    root = _svg(f)
    strokes = [(e.get("stroke"), e.get("stroke-dasharray")) for e in root.iter()
               if e.tag in (f"{NS}polyline", f"{NS}line")]
    for series in ("capacity", "allocated", "used", "reserve"):
        assert any(s == chart.COLORS[series] for s, _ in strokes), series
    assert (chart.COLORS["used"], "6,4") in strokes  # the forecast
    texts = " ".join(t.text or "" for t in root.iter(f"{NS}text"))
    assert "penuh ±21 Desember 2026" in texts
    assert "GiB" in texts and "Kapasitas" in texts and "Perkiraan" in texts
    # The fill point lies on the capacity line's height.
    full_marks = [c for c in root.iter(f"{NS}circle") if c.get("stroke") == chart.COLORS["full"]]
    assert len(full_marks) == 1


def test_chart_of_a_single_record_and_hostile_names_is_still_valid_svg():
    h = history([GiB], host="<srv&1>")
    (f,) = storage.forecast(h)
    root = _svg(f)
    assert root.find(f"{NS}title").text == "<srv&1>:/srv"
    texts = " ".join(t.text or "" for t in root.iter(f"{NS}text"))
    assert "riwayat belum cukup" in texts
    assert _svg({"host": "h", "mount": "/", "points": []}) is not None


# --- Report and `sop storage` ----------------------------------------------------------


LETTERHEAD = {"letterhead": {"regency": "PEMERINTAH KABUPATEN SUMBA BARAT DAYA",
                             "office": "DINAS KOMUNIKASI DAN INFORMATIKA"}}


def supervised_run(tmp_path) -> dict:
    reqs = [request("dinkes", 100 * MiB, [("admin", 100 * MiB)])]
    usage = [usage_row("hosting:dinkes", 92 * MiB)]
    hist = history([50 * GiB + i * GiB for i in range(11)], host="lab", mount="/")
    for rec in hist:
        storage.write_record(tmp_path / "records", rec)
    rec = storage.build_record(run_id="R", taken=hist[-1]["taken"], inventory="inventory/lab",
                               status="ok", check_mode=False, overcommit=False,
                               reserve_percent=15, warn_percent=80, requests=reqs,
                               mounts=[], usage=usage)
    forecasts = storage.forecast(storage.load_history(tmp_path / "records"))
    forecasts[0]["reserve_percent"] = 15
    return {
        "run_id": "20261111T020000Z", "started": hist[-1]["taken"], "finished": hist[-1]["taken"],
        "status": "ok", "requests": [{"subdomain": "dinkes", "agency": "Dinas Dinkes",
                                      "new": False}],
        "steps": [], "postchecks": [], "notes": [], "storage": hist[-1]["mounts"],
        "supervision": {"warn_percent": 80, "agencies": storage.supervision(rec, 80)},
        "forecast": forecasts,
    }


def test_report_shows_the_chart_forecast_and_supervision_list(tmp_path):
    run = supervised_run(tmp_path)
    paths = documents.render_report(run, LETTERHEAD,
                                    tmp_path / "reports")
    md = paths["md"].read_text()
    assert "Perkiraan pertumbuhan pemakaian ruang" in md
    assert "| 1 | Dinas Dinkes (dinkes) | w-dinkes (hosting) | 92,0 MiB | 100,0 MiB | 92,0% |" \
        in md and "Pengelola dinkes" in md
    assert "21 Desember 2026" in md
    text = subprocess.run(["pdftotext", "-layout", str(paths["pdf"]), "-"], check=True,
                          capture_output=True, text=True).stdout
    assert "Perkiraan pertumbuhan pemakaian ruang" in text
    assert "penuh ±21 Desember 2026" in text  # text drawn inside the chart
    assert "Pengelola dinkes" in text and "92,0%" in text
    data = json.loads(paths["json"].read_text())
    assert data["supervision"]["agencies"][0]["subdomain"] == "dinkes"


def test_report_without_storage_history_still_renders(tmp_path):
    run = {"run_id": "R2", "status": "failed", "steps": [], "storage": []}
    paths = documents.render_report(run, LETTERHEAD, tmp_path)
    assert "Perkiraan pertumbuhan" not in paths["md"].read_text()


def _inventory(tmp_path) -> Path:
    inv = tmp_path / "inv"
    (inv / "group_vars" / "all").mkdir(parents=True)
    (inv / "hosts.yml").write_text("all:\n  hosts:\n    localhost:\n"
                                   "      ansible_connection: local\n")
    (inv / "group_vars" / "all" / "sop.yml").write_text(
        "sop_zone: sumbabaratdayakab.go.id\n"
        f"sop_state_dir: {tmp_path}\n"
        f"sop_records_dir: {tmp_path / 'records'}\n"
        "sop_storage_warn_percent: 90\n")
    return inv


def test_sop_storage_prints_the_list_and_the_forecast(tmp_path, capsys):
    inv = _inventory(tmp_path)
    assert cli.main(["-i", str(inv), "storage"]) == 2  # nothing to show yet: cannot run
    assert "no storage records" in capsys.readouterr().err

    run = supervised_run(tmp_path)
    latest = storage.build_record(
        run_id="20261111T030000Z", taken="2026-11-11T03:00:00+00:00", inventory="inventory/lab",
        status="ok", check_mode=False, overcommit=False, reserve_percent=15, warn_percent=80,
        requests=[request("dinkes", 100 * MiB, [("admin", 100 * MiB)])],
        mounts=run["storage"], usage=[usage_row("hosting:dinkes", 92 * MiB)])
    storage.write_record(tmp_path / "records", latest)

    assert cli.main(["-i", str(inv), "storage"]) == 0
    out = capsys.readouterr().out
    assert "## Instansi dengan pemakaian kuota ≥ 90%" in out
    assert "| 1 | Dinas Dinkes (dinkes) | w-dinkes (hosting) | 92,0 MiB | 100,0 MiB | 92,0% " \
        "| Pengelola dinkes (Kasubbag) | 0812-0000-0000 |" in out
    assert "Riwayat belum cukup" not in out and "penuh sekitar" in out


def test_sop_storage_json_uses_the_warning_share_given(tmp_path, capsys):
    inv = _inventory(tmp_path)
    supervised_run(tmp_path)
    latest = storage.build_record(
        run_id="20261111T030000Z", taken="2026-11-11T03:00:00+00:00", inventory="inventory/lab",
        status="ok", check_mode=False, overcommit=False, reserve_percent=15, warn_percent=80,
        requests=[request("dinkes", 100 * MiB, [("admin", 100 * MiB)])],
        mounts=history([GiB])[0]["mounts"], usage=[usage_row("hosting:dinkes", 92 * MiB)])
    storage.write_record(tmp_path / "records", latest)
    assert cli.main(["-i", str(inv), "storage", "--json", "--warn-percent", "95"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["warn_percent"] == 95 and data["supervision"] == []
    assert cli.main(["-i", str(inv), "storage", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["warn_percent"] == 90
    assert [a["subdomain"] for a in data["supervision"]] == ["dinkes"]
    assert data["supervision"][0]["contact"]["phone"] == "0812-0000-0000"
    assert {(f["host"], f["mount"]) for f in data["forecast"]} == {("lab", "/"), ("srv1", "/srv")}
    assert all("points" not in f for f in data["forecast"])


def test_a_refused_or_check_mode_run_allocates_nothing():
    h = history([GiB] * 4, allocated=10 * GiB)
    h[0]["status"] = "refused"       # nothing in force yet
    h[2]["status"] = "refused"       # asked for more, was refused
    h[2]["mounts"][0]["allocated_bytes"] = 500 * GiB
    h[3]["check_mode"] = True
    h[3]["mounts"][0]["allocated_bytes"] = 400 * GiB
    (f,) = storage.forecast(h)
    assert [p["allocated_bytes"] for p in f["points"]] == [None, 10 * GiB, 10 * GiB, 10 * GiB]
    assert f["allocated_bytes"] == 10 * GiB
    labels = [t.text for t in _svg(f).iter(f"{NS}text")]
    assert "500 GiB" not in labels and "125 GiB" in labels  # the axis follows what is real


def test_history_reads_a_bounded_spread_of_the_window(tmp_path):
    start = datetime(2026, 1, 1, tzinfo=UTC)
    folder = tmp_path / "storage"
    folder.mkdir()
    # A year of records, 6 a day: only the window is read, at most ~limit files.
    for i in range(365 * 6):
        t = start + timedelta(hours=4 * i)
        run_id = t.strftime("%Y%m%dT%H%M%SZ")
        (folder / f"{run_id}.json").write_text(json.dumps(
            {"run_id": run_id, "taken": t.isoformat(), "mounts": []}))
    h = storage.load_history(tmp_path, window_days=90, limit=120)
    assert 100 <= len(h) <= 121
    newest = start + timedelta(hours=4 * (365 * 6 - 1))
    assert _taken(h[-1]) == newest
    assert _taken(h[0]) >= newest - timedelta(days=90)
    gaps = [(_taken(b) - _taken(a)).total_seconds() / 3600 for a, b in zip(h, h[1:], strict=False)]
    assert max(gaps) <= 24  # spread over the window, not bunched at its end


def _taken(record):
    return datetime.fromisoformat(record["taken"])
