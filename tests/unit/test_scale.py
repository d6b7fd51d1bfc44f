"""The paths a run over hundreds of agencies takes (issue 10): passwords hashed
on every core, printouts made on every core, post-checks side by side, and the
PDF report that counts the rows it does not list. No root needed."""

from __future__ import annotations

import copy
import itertools
import threading
import time

from passlib.hash import sha512_crypt

from sop import documents, postcheck
from sop import register as reg

from .test_documents import (
    TODAY,
    make_credentials,
    make_request,
    make_run,
    make_settings,
    pdftotext,
)


def test_many_new_accounts_get_their_own_verifying_hashes(tmp_path, monkeypatch):
    monkeypatch.setattr(reg, "PARALLEL_HASH_MIN", 2)  # the parallel path with few accounts
    wanted = [{"id": f"u{i}@x.example", "username": f"u{i}@x.example", "kind": "mailbox",
               "subdomain": f"s{i % 3}"} for i in range(12)]
    register = reg.Register(tmp_path / "r.vault.yml", b"pw")
    added = register.ensure(wanted + wanted[:2])  # a repeat is added once
    assert added == [w["id"] for w in wanted]
    hashes = {e["hash"] for e in register.accounts.values()}
    assert len(hashes) == 12, "every account has its own salt"
    for entry in register.accounts.values():
        assert sha512_crypt.verify(entry["password"], entry["hash"])


def test_many_printouts_are_made_in_order_each_with_its_own_passwords(tmp_path, monkeypatch):
    monkeypatch.setattr(documents, "PARALLEL_PRINTOUTS_MIN", 1)
    jobs = []
    for i in range(4):
        req = copy.deepcopy(make_request())
        req["subdomain"] = f"dinkes{i}"
        creds = copy.deepcopy(make_credentials())
        creds[f"hosting:dinkes{i}"] = creds.pop("hosting:dinkes")
        for entry in creds.values():
            entry["password"] = f"Pw{i}x-aaaa-bbbb-cccc"
        jobs.append((req, creds))
    paths = documents.render_printouts(jobs, make_settings(), tmp_path / "out", TODAY)
    assert [p.name for p in paths] == [f"dinkes{i}.pdf" for i in range(4)]
    for i, path in enumerate(paths):
        assert path.stat().st_mode & 0o077 == 0
        text = pdftotext(path)
        assert f"Pw{i}x-aaaa-bbbb-cccc" in text
        assert all(f"Pw{j}x" not in text for j in range(4) if j != i)


def test_post_checks_run_side_by_side_and_keep_the_request_order(monkeypatch):
    # Each check records when it starts and ends as a step of one shared counter
    # (an order, not a duration): checks side by side overlap in that order.
    intervals = []
    events = itertools.count()
    lock = threading.Lock()

    def slow(kind):
        def check(req, *args):
            with lock:
                start = next(events)
            time.sleep(0.05)  # a socket's wait, long enough for the next check to start
            with lock:
                intervals.append((start, next(events)))
            target = args[0] if kind == "imap" else req["fqdn"]
            return {"subdomain": req["subdomain"], "check": kind, "target": target, "ok": True,
                    "detail": ""}
        return check

    for kind in ("dns", "http", "imap"):
        monkeypatch.setattr(postcheck, f"check_{kind}", slow(kind))
    requests, creds = [], {}
    for i in range(6):
        req = copy.deepcopy(make_request())
        req["subdomain"], req["fqdn"] = f"s{i}", f"s{i}.example"
        for box in req["mail"]["mailboxes"]:
            box["address"] = f"{box['local_part']}@s{i}.example"
            creds[box["address"]] = {"password": "x"}
        requests.append(req)
    results = postcheck.run_postchecks(requests, creds, {})
    expected = []
    for req in requests:
        expected += [(req["subdomain"], "dns"), (req["subdomain"], "http")]
        expected += [(req["subdomain"], "imap") for _ in req["mail"]["mailboxes"]]
    assert [(r["subdomain"], r["check"]) for r in results] == expected
    assert len(intervals) == len(expected)
    # How many were in flight at once: at most the workers, and more than one.
    in_flight = max(sum(1 for s, e in intervals if s <= point < e) for point, _ in intervals)
    assert 1 < in_flight <= postcheck.WORKERS


def test_a_large_pdf_report_lists_failures_and_new_requests_and_counts_the_rest(tmp_path):
    run = make_run()
    base_request = run["requests"][0]
    run["requests"] = [{**base_request, "subdomain": f"lama{i:03d}", "new": False}
                       for i in range(60)] + [{**base_request, "subdomain": "barusekali",
                                               "new": True}]
    ok = {"check": "dns", "ok": True, "detail": "A 127.0.0.1"}
    run["postchecks"] = [{**ok, "subdomain": f"lama{i:03d}", "target": f"lama{i:03d}.example"}
                         for i in range(60)]
    run["postchecks"].append({"subdomain": "rusak", "check": "imap",
                              "target": "admin@rusak.example", "ok": False,
                              "detail": "login ditolak"})
    paths = documents.render_report(run, make_settings(), tmp_path)
    text = pdftotext(paths["pdf"])
    assert "barusekali" in text and "lama007" not in text
    assert "60 permohonan lain sudah ada" in text
    assert "admin@rusak.example" in text and "lama007.example" not in text
    assert "60 yang berhasil tidak dirinci" in text and "DNS 60" in text
    markdown = paths["md"].read_text()
    assert "lama007.example" in markdown and "lama059" in markdown, "Markdown keeps every row"


def _boxes(n_requests: int, per: int = 3) -> list[tuple[dict, dict]]:
    return [({"subdomain": f"s{i}"}, {"address": f"b{j}@s{i}.example"})
            for i in range(n_requests) for j in range(per)]


def test_every_mailbox_logs_in_while_there_are_few():
    boxes = _boxes(10)  # 30 mailboxes
    assert postcheck._imap_chosen(boxes, {}, set()) == {b["address"] for _, b in boxes}
    assert postcheck._imap_chosen(boxes, {}, None) == {b["address"] for _, b in boxes}


def test_past_the_limit_changed_requests_log_in_and_a_spread_sample_of_the_rest():
    boxes = _boxes(200)  # 600 mailboxes
    chosen = postcheck._imap_chosen(boxes, {}, {"s7", "s150"})
    assert {f"b{j}@s7.example" for j in range(3)} <= chosen
    assert {f"b{j}@s150.example" for j in range(3)} <= chosen
    others = chosen - {f"b{j}@s{i}.example" for i in (7, 150) for j in range(3)}
    assert len(others) == 5
    assert len({a.split("@")[1] for a in others}) == 5, "the sample is spread over requests"
    assert len(postcheck._imap_chosen(boxes, {"imap_all": True}, set())) == 600
    assert len(postcheck._imap_chosen(boxes, {"imap_sample": 0}, set())) == 0


def test_printouts_in_one_process_share_one_font_configuration(tmp_path, monkeypatch):
    """A FontConfiguration per sheet grew the process by about 0.3 MB a sheet
    (fonts loaded again, never given back): 500 sheets, 150 MB more."""
    from weasyprint.text import fonts

    made = []

    class Counted(fonts.FontConfiguration):
        def __init__(self, *args, **kwargs):
            made.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(fonts, "FontConfiguration", Counted)
    monkeypatch.setattr(documents, "_font_config", None)
    for i in range(3):
        path = documents.render_printout(make_request(), make_credentials(), make_settings(),
                                         tmp_path / str(i), TODAY)
        assert "K7mP-x3Rt-9wQz-Hn4c" in pdftotext(path)
    assert len(made) == 1
