"""Role filter plugins: zone serials (the storage check: test_storage.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def load(path: str):
    spec = importlib.util.spec_from_file_location(Path(path).stem, REPO / path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


bind = load("roles/bind/filter_plugins/bind_zone.py")


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

