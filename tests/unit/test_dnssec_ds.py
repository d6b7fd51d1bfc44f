"""`sop dnssec ds`: the key states read from the primary, in words for the registrar."""

from __future__ import annotations

from sop.dnssec import parse_keys, render, wanted

ZONE = "sumbabaratdayakab.go.id"
OUTPUT = f"""\
### K{ZONE}.+013+40194.key
GoalState: omnipresent
DSState: hidden
Published: 20261206094853
Active: 20261206094853
{ZONE}. IN DS 40194 13 2 A993ACEF1E3D228661B8B3B41F2C4A2A3B8D301C5D92F080D5DB1E98BCE9EC1B
### K{ZONE}.+013+11111.key
GoalState: hidden
DSState: unretentive
{ZONE}. IN DS 11111 13 2 00AA
"""


def test_the_keys_and_their_states_are_read_from_the_playbook_output():
    keys = parse_keys(OUTPUT)
    assert [k["tag"] for k in keys] == ["40194", "11111"]
    assert keys[0]["DSState"] == "hidden" and keys[0]["ds"][0].endswith("BCE9EC1B")
    assert [k["tag"] for k in wanted(keys)] == ["40194"]


def test_the_registrar_is_told_which_ds_to_publish_and_which_to_withdraw():
    text = render(ZONE, parse_keys(OUTPUT))
    publish, _, withdraw = text.partition("DICABUT")
    assert "DS 40194 13 2 A993" in publish and "belum ada di induk" in publish
    assert "DS 11111" not in publish and "DS 11111 13 2 00AA" in withdraw
    assert f"rndc dnssec -checkds -key 40194 published {ZONE}" in text
    assert "-key 11111 published" not in text


def test_no_key_says_dnssec_is_not_on_and_prints_no_ds():
    text = render(ZONE, parse_keys(""))
    assert "Belum ada kunci" in text and "IN DS" not in text


def test_the_run_report_asks_for_the_ds_only_while_the_registrar_has_something_to_do(monkeypatch):
    from sop import dnssec

    keys = parse_keys(OUTPUT)
    monkeypatch.setattr(dnssec, "read_keys", lambda settings: (ZONE, keys))
    notes = dnssec.report_notes(None)
    assert len(notes) == 2
    assert "pasang" in notes[0] and "DS 40194 13 2 A993" in notes[0]
    assert "cabut" in notes[1] and "DS 11111" in notes[1]
    keys[0]["DSState"] = "omnipresent"  # the registrar published it
    keys[1]["DSState"] = "hidden"  # and withdrew the old one
    assert dnssec.report_notes(None) == []
    monkeypatch.setattr(dnssec, "read_keys", lambda settings: (ZONE, []))  # unsigned zone
    assert dnssec.report_notes(None) == []


def test_a_primary_that_cannot_be_asked_is_a_note_not_a_failed_run(monkeypatch):
    from sop import dnssec

    def unreachable(settings):
        raise dnssec.KeysUnreadable("ns1: unreachable")

    monkeypatch.setattr(dnssec, "read_keys", unreachable)
    assert dnssec.report_notes(None) == ["DNSSEC: ns1: unreachable."]


def test_the_run_report_reads_the_keys_from_the_run_itself_without_a_second_run(monkeypatch):
    """site.yml lists the keys (dnssec-ds.yml is one of its plays): the report
    takes them from the run's events; the primary is not asked again."""
    from pathlib import Path
    from types import SimpleNamespace

    import yaml

    from sop import dnssec

    repo = Path(__file__).resolve().parents[2]
    site = yaml.safe_load((repo / "playbooks" / "site.yml").read_text())
    assert any(play.get("ansible.builtin.import_playbook") == "dnssec-ds.yml" for play in site)
    listing = yaml.safe_load((repo / "playbooks" / "dnssec-ds.yml").read_text())
    assert listing[0]["tasks"][0]["name"] == dnssec.LIST_TASK

    events = [{"event": "runner_on_ok", "event_data": {"task": "Something else",
                                                       "res": {"stdout": "### x"}}},
              {"event": "runner_on_ok", "event_data": {"task": dnssec.LIST_TASK,
                                                       "res": {"stdout": OUTPUT}}}]
    keys = dnssec.keys_from_events(events)
    assert [k["tag"] for k in keys] == ["40194", "11111"]
    assert dnssec.keys_from_events(events[:1]) is None

    def second_run(settings):
        raise AssertionError("the primary was asked again")

    monkeypatch.setattr(dnssec, "read_keys", second_run)
    notes = dnssec.report_notes(SimpleNamespace(zone=ZONE), keys)
    assert len(notes) == 2 and f"untuk {ZONE}" in notes[0] and "DS 40194" in notes[0]
