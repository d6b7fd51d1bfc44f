"""The DNS post-check passes only on the answer the request must get.

A small authoritative responder on 127.0.0.1 (a thread of this test, on a
port of its own) answers what each test tells it to.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import dns.message
import dns.rcode
import dns.rrset
import pytest

from sop import postcheck

ZONE = "contoh.go.id"


@pytest.fixture
def answers() -> Iterator[tuple[dict, int]]:
    """(name, type) -> rdata texts to answer; yields it and the port."""
    table: dict[tuple[str, str], list[str]] = {}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)  # to see the stop flag
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                wire, client = sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            query = dns.message.from_wire(wire)
            reply = dns.message.make_response(query)
            question = query.question[0]
            key = (question.name.to_text().rstrip("."), dns.rdatatype.to_text(question.rdtype))
            if table.get(key):
                reply.answer.append(dns.rrset.from_text_list(
                    question.name, 300, "IN", key[1], table[key]))
            sock.sendto(reply.to_wire(), client)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield table, sock.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    sock.close()


def request(label: str, hosting: bool = True, domain: str = "subdomain") -> dict:
    return {"subdomain": label, "fqdn": f"{label}.{ZONE}",
            "hosting": {"quota_bytes": 1} if hosting else None,
            "mail": {"domain": domain, "address_domain": f"{label}.{ZONE}"}}


def cfg(port: int, **extra: object) -> dict:
    return {"dns_server": "127.0.0.1", "dns_port": port, "web_address": "127.0.0.1",
            "imap_host": "127.0.0.1", "imap_server_name": f"mail.{ZONE}", **extra}


@pytest.mark.parametrize(("given", "ok"), [
    (["127.0.0.1"], True),
    (["127.0.0.2"], False),                # the name points at another server
    (["127.0.0.1", "127.0.0.2"], False),   # half the visitors go elsewhere
    ([], False),
])
def test_a_site_name_must_point_at_the_web_server(answers, given, ok) -> None:
    table, port = answers
    table[(f"dinkes.{ZONE}", "A")] = given
    result = postcheck.check_dns(request("dinkes"), cfg(port))
    assert (result["check"], result["target"], result["ok"]) == ("dns", f"dinkes.{ZONE}", ok)
    if given and not ok:
        assert "diharapkan 127.0.0.1" in result["detail"]


def test_web_ipv4_says_what_the_name_must_answer(answers) -> None:
    table, port = answers
    table[(f"dinkes.{ZONE}", "A")] = ["192.0.2.80"]
    assert postcheck.check_dns(request("dinkes"), cfg(port, web_ipv4="192.0.2.80"))["ok"]
    assert not postcheck.check_dns(request("dinkes"), cfg(port))["ok"]


@pytest.mark.parametrize(("given", "ok"), [
    ([f"10 mail.{ZONE}."], True),
    ([f"20 MAIL.{ZONE.upper()}."], True),   # names compare without case
    (["10 mx.elsewhere.example."], False),
    ([f"10 mail.{ZONE}.", "20 mx.elsewhere.example."], False),
    ([], False),
])
def test_a_mail_only_name_must_name_the_mail_host(answers, given, ok) -> None:
    table, port = answers
    table[(f"dukcapil.{ZONE}", "MX")] = given
    result = postcheck.check_dns(request("dukcapil", hosting=False), cfg(port))
    assert result["ok"] is ok, result


def test_the_expected_mail_host_comes_from_the_settings() -> None:
    assert postcheck.expected_dns("MX", {"imap_host": f"mail.{ZONE}"}) == f"mail.{ZONE}."
    assert postcheck.expected_dns("MX", {"imap_host": "127.0.0.1",
                                         "imap_server_name": f"Mail.{ZONE}."}) == f"mail.{ZONE}."
    assert postcheck.expected_dns("MX", {"imap_host": "127.0.0.1"}) is None
    assert postcheck.expected_dns("A", {"web_address": "web.example"}) is None
    assert postcheck.expected_dns("A", {"web_address": "::1"}) == "::1"


def test_no_server_is_a_failed_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postcheck, "TIMEOUT", 0.5)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    result = postcheck.check_dns(request("dinkes"), cfg(port))
    assert result["ok"] is False and result["detail"].startswith("A: ")


def _mail_request(label: str, locals_: list[str], status: str | None = None) -> dict:
    boxes = [{"address": f"{lp}@{label}.example.go.id"} for lp in locals_]
    req = {"subdomain": label, "fqdn": f"{label}.example.go.id", "hosting": None,
           "mail": {"domain": "subdomain", "address_domain": f"{label}.example.go.id",
                    "mailboxes": boxes}}
    if status:
        req["status"] = status
    return req


def _webmail_plan(monkeypatch: pytest.MonkeyPatch, requests: list[dict], changed,
                  **extra: object) -> list[tuple]:
    """Which webmail checks a run makes: (subdomain, address, suspended)."""
    monkeypatch.setattr(postcheck, "check_dns", lambda req, cfg: {"check": "dns"})
    monkeypatch.setattr(postcheck, "check_imap", lambda *a, **k: {"check": "imap"})
    monkeypatch.setattr(postcheck, "check_webmail",
                        lambda req, cfg, address=None, password=None, suspended=False:
                        {"check": "webmail", "plan": (req["subdomain"], address, suspended)})
    creds = {b["address"]: {"password": "rahasia"} for r in requests
             for b in r["mail"]["mailboxes"]}
    settings = {"dns_server": "127.0.0.1", "web_address": "127.0.0.1", **extra}
    results = postcheck.run_postchecks(requests, creds, settings, changed, workers=1)
    return sorted(r["plan"] for r in results if r["check"] == "webmail")


def test_webmail_logins_are_checked_for_new_accounts_and_refused_for_suspended(monkeypatch):
    reqs = [_mail_request("baru", ["admin", "kepala"]), _mail_request("lama", ["admin"]),
            _mail_request("tangguh", ["admin"], status="suspended")]
    plan = _webmail_plan(monkeypatch, reqs, {"baru"}, webmail_host="webmail.example.go.id")
    assert plan == [("baru", "admin@baru.example.go.id", False),
                    ("baru", "kepala@baru.example.go.id", False),
                    ("tangguh", "admin@tangguh.example.go.id", True)]


def test_webmail_page_alone_when_no_account_changed_and_nothing_without_a_webmail(monkeypatch):
    reqs = [_mail_request("lama", ["admin"])]
    assert _webmail_plan(monkeypatch, reqs, set(), webmail_host="webmail.example.go.id") == \
        [("-", None, False)]
    assert _webmail_plan(monkeypatch, reqs, set()) == []


def _call_log(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Replaces the checks by ones that log (kind, address, suspended) in call order."""
    calls: list[tuple] = []

    def imap(req, address, password, cfg, suspended=False, timeout=None):
        calls.append(("imap", address, suspended))
        return {"check": "imap", "target": address, "ok": True}

    def webmail(req, cfg, address=None, password=None, suspended=False):
        calls.append(("webmail", address, suspended))
        return {"check": "webmail", "target": address, "ok": True}

    monkeypatch.setattr(postcheck, "check_dns", lambda req, cfg: {"check": "dns",
                                                                  "target": req["subdomain"]})
    monkeypatch.setattr(postcheck, "check_imap", imap)
    monkeypatch.setattr(postcheck, "check_webmail", webmail)
    return calls


def test_refusals_come_last_then_one_good_login_clears_dovecot_s_penalty(monkeypatch):
    """A refused password raises Dovecot's penalty for the checking address,
    which delays its good logins too: those must not come after a refusal,
    and the run must not end on one."""
    calls = _call_log(monkeypatch)
    reqs = [_mail_request("tangguh", ["admin"], status="suspended"),
            _mail_request("baru", ["admin", "kepala"])]
    creds = {b["address"]: {"password": "rahasia"} for r in reqs for b in r["mail"]["mailboxes"]}
    results = postcheck.run_postchecks(reqs, creds, {"webmail_host": "webmail.example"},
                                       {"baru", "tangguh"}, workers=1)
    refused = [n for n, call in enumerate(calls) if call[2]]
    assert [calls[n] for n in refused] == [("imap", "admin@tangguh.example.go.id", True),
                                           ("webmail", "admin@tangguh.example.go.id", True)]
    assert max(n for n, call in enumerate(calls) if not call[2]) > max(refused), \
        "the run ends on a refused login"
    assert min(refused) == 4, "a good login came after a refusal"
    assert calls[-2:] == [("imap", "admin@baru.example.go.id", False),
                          ("webmail", "admin@baru.example.go.id", False)]
    # The report: request order, and the clearing logins are not rows of it.
    assert [(r["check"], r["target"]) for r in results] == [
        ("dns", "tangguh"), ("imap", "admin@tangguh.example.go.id"),
        ("dns", "baru"), ("imap", "admin@baru.example.go.id"),
        ("imap", "kepala@baru.example.go.id"), ("webmail", "admin@tangguh.example.go.id"),
        ("webmail", "admin@baru.example.go.id"), ("webmail", "kepala@baru.example.go.id")]


def test_no_refusal_no_clearing_login(monkeypatch):
    calls = _call_log(monkeypatch)
    reqs = [_mail_request("baru", ["admin"])]
    postcheck.run_postchecks(reqs, {"admin@baru.example.go.id": {"password": "x"}}, {},
                             {"baru"}, workers=1)
    assert calls == [("imap", "admin@baru.example.go.id", False)]


def test_refusals_are_tried_for_one_mailbox_of_a_spread_sample_of_suspended_agencies(
        monkeypatch):
    calls = _call_log(monkeypatch)
    reqs = [_mail_request(f"t{i}", ["a", "b"], status="suspended") for i in range(12)]
    reqs.append(_mail_request("aktif", ["admin"]))
    creds = {b["address"]: {"password": "x"} for r in reqs for b in r["mail"]["mailboxes"]}
    postcheck.run_postchecks(reqs, creds, {}, set(), workers=1)
    refused = [address for _, address, suspended in calls if suspended]
    assert refused == ["a@t0.example.go.id", "a@t4.example.go.id", "a@t8.example.go.id"]
    calls.clear()
    postcheck.run_postchecks(reqs, creds, {"refusal_sample": 0}, set(), workers=1)
    assert not any(suspended for *_, suspended in calls)
    assert calls == [("imap", "admin@aktif.example.go.id", False)], "no refusal, no clearing"
    calls.clear()
    postcheck.run_postchecks(reqs, creds, {"imap_all": True}, set(), workers=1)
    assert sum(1 for *_, suspended in calls if suspended) == 24


def test_webmail_logins_of_many_new_accounts_are_a_spread_sample(monkeypatch):
    """A whole Roundcube session per new mailbox made the post-check of 500
    new agencies take 130 s; IMAP logs every new mailbox in already."""
    reqs = [_mail_request(f"baru{i}", ["admin", "kepala"]) for i in range(100)]
    changed = {r["subdomain"] for r in reqs}
    plan = _webmail_plan(monkeypatch, reqs, changed, webmail_host="webmail.example.go.id")
    assert len(plan) == 5
    assert len({sub for sub, _, _ in plan}) == 5, "the sample is spread over the agencies"
    plan = _webmail_plan(monkeypatch, reqs, changed, webmail_host="webmail.example.go.id",
                         webmail_sample=0)
    assert plan == [("-", None, False)], "no login sampled: the page alone"
    plan = _webmail_plan(monkeypatch, reqs, changed, webmail_host="webmail.example.go.id",
                         imap_all=True)
    assert len(plan) == 200
