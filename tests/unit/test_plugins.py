"""Role filter plugins: zone serials and the storage headroom."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def load(path: str):
    spec = importlib.util.spec_from_file_location(Path(path).stem, REPO / path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


bind = load("roles/bind/filter_plugins/bind_zone.py")
storage = load("roles/storage_check/filter_plugins/storage_check.py")


def zone_text(serial: int, digest: str) -> str:
    return f"; content-hash: {digest}\n@ IN SOA ns1 h (\n\t\t{serial} ; serial\n"


def test_serial_stays_when_content_is_unchanged():
    assert bind.bind_zone_serial(zone_text(2026113005, "abc"), "abc", today="2026-11-30") == \
        2026113005


def test_serial_starts_at_today_00_and_moves_with_content():
    assert bind.bind_zone_serial("", "abc", today="2026-11-30") == 2026113000
    assert bind.bind_zone_serial(zone_text(2026113000, "abc"), "def", today="2026-11-30") == \
        2026113001
    assert bind.bind_zone_serial(zone_text(2025010107, "abc"), "def", today="2026-11-30") == \
        2026113000


def test_150_changes_in_one_day_keep_a_valid_increasing_serial():
    text, serials = "", []
    for i in range(150):
        s = bind.bind_zone_serial(text, f"h{i}", today="2026-11-30")
        serials.append(s)
        text = zone_text(s, f"h{i}")
    assert serials == sorted(set(serials))
    assert all(len(str(s)) == 10 and s < 2**32 for s in serials)
    assert serials[-1] == 2026113000 + 149


def test_serial_is_never_below_the_live_one():
    assert bind.bind_zone_serial(zone_text(2026113000, "abc"), "abc", live_serial=2026113010,
                                 today="2026-11-30") == 2026113011


def test_rname_escapes_dots_in_the_local_part():
    assert bind.bind_rname("host.master@example.go.id") == "host\\.master.example.go.id."


MOUNTS = {
    "/": {"size_total": 100 * 2**30, "size_available": 40 * 2**30},
    "/srv": {"size_total": 10 * 2**30, "size_available": 5 * 2**30},
}


def du(path, used):
    return {"item": {"path": path}, "rc": 0, "stdout": f"{used}\t{path}"}


def test_headroom_groups_paths_by_file_system():
    demand = [{"path": "/var/mail/vhosts", "bytes": 2**30}, {"path": "/srv/www", "bytes": 2**30},
              {"path": "/var/www", "bytes": 2**30}]
    out = storage.storage_check_headroom(demand, MOUNTS, [], 15)
    by = {e["mount"]: e for e in out}
    assert set(by) == {"/", "/srv"}
    assert by["/"]["allocated_bytes"] == 2 * 2**30 and by["/"]["ok"]
    assert by["/srv"]["paths"] == ["/srv/www"]


def test_headroom_refuses_when_quotas_eat_into_the_reserve():
    demand = [{"path": "/srv/www", "bytes": 4 * 2**30}]
    (entry,) = storage.storage_check_headroom(demand, MOUNTS, [], 15)
    # 5 GiB free - 4 GiB of quota = 1 GiB < 15% of 10 GiB
    assert not entry["ok"]
    assert "/srv/www on /srv" in entry["message"] and "available 5.00 GiB" in entry["message"]


def test_data_already_inside_quotas_is_not_counted_twice():
    demand = [{"path": "/srv/www", "bytes": 4 * 2**30}]
    (entry,) = storage.storage_check_headroom(demand, MOUNTS, [du("/srv/www", 3 * 2**30)], 15)
    assert entry["outstanding_bytes"] == 2**30 and entry["ok"]


def test_a_path_on_no_mount_is_an_error():
    with pytest.raises(Exception, match="no mounted file system"):
        storage.storage_check_headroom([{"path": "/x", "bytes": 1}], {"/srv": MOUNTS["/srv"]},
                                       [], 15)
