"""Records and policy for mail programs and sending servers (issue 18):
autoconfig/autodiscover names, RFC 6186 SRV, MTA-STS and TLS-RPT."""

from __future__ import annotations

import dns.rdatatype
import dns.zone
import pytest

from sop import model

ZONE = "sumbabaratdayakab.go.id"
MAIL = f"mail.{ZONE}"


def req(label, mail="subdomain"):
    domain = ZONE if mail == "parent" else f"{label}.{ZONE}"
    return {"subdomain": label, "mail": {"domain": mail, "address_domain": domain,
                                         "mailboxes": [], "aliases": []}}


def settings(**over):
    base = {"zone": ZONE, "web_ipv4": "192.0.2.10", "mail_hostname": MAIL,
            "mail_client": {"imap_port": 143, "imap_security": "STARTTLS", "smtp_port": 587},
            "mta_sts": {"mode": "enforce", "tls_rpt_rua": f"tlsrpt@{ZONE}"}}
    base.update(over)
    return base


def by_name(records):
    out = {}
    for r in records:
        out.setdefault((r["name"], r["type"]), []).append(r["value"])
    return out


def test_policy_id_follows_the_policy_text_only():
    a = model.mta_sts_policy(settings())
    assert a == model.mta_sts_policy(settings()), "same policy, same id on every run"
    assert a["text"] == f"version: STSv1\r\nmode: enforce\r\nmx: {MAIL}\r\nmax_age: 604800\r\n"
    assert a["id"].isalnum() and 1 <= len(a["id"]) <= 32
    testing = model.mta_sts_policy(settings(mta_sts={"mode": "testing"}))
    assert "mode: testing" in testing["text"] and testing["id"] != a["id"]
    longer = model.mta_sts_policy(settings(mta_sts={"mode": "enforce", "max_age": 86400}))
    assert longer["id"] != a["id"]
    # Settings that are not in the policy leave the id alone.
    other_rua = settings(mta_sts={"mode": "enforce", "tls_rpt_rua": "x@example.org"})
    assert model.mta_sts_policy(other_rua)["id"] == a["id"]


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="enforcing"):
        model.mta_sts_policy(settings(mta_sts={"mode": "enforcing"}))


def test_every_mail_domain_gets_its_names_srv_and_txt_records():
    recs = by_name(model.mail_client_records([req("dinkes"), req("bappeda", "parent"),
                                              {"subdomain": "web", "mail": None}], settings()))
    sts_id = model.mta_sts_policy(settings())["id"]
    for name in ("dinkes", "@"):
        def at(prefix, name=name):
            return prefix if name == "@" else f"{prefix}.{name}"
        for label in ("autoconfig", "autodiscover", "mta-sts"):
            assert recs[(at(label), "A")] == ["192.0.2.10"]
        # The printout says IMAP on 143 with STARTTLS: that first.
        assert recs[(at("_imap._tcp"), "SRV")] == [f"0 1 143 {MAIL}."]
        assert recs[(at("_imaps._tcp"), "SRV")] == [f"10 1 993 {MAIL}."]
        assert recs[(at("_submission._tcp"), "SRV")] == [f"0 1 587 {MAIL}."]
        assert recs[(at("_mta-sts"), "TXT")] == [f'"v=STSv1; id={sts_id}"']
        assert recs[(at("_smtp._tls"), "TXT")] == [f'"v=TLSRPTv1; rua=mailto:tlsrpt@{ZONE}"']
    assert not any(n.endswith("web") for n, _ in recs), "no mail, no records"
    assert model.mail_client_names([req("dinkes")]) == [
        f"autoconfig.dinkes.{ZONE}", f"autodiscover.dinkes.{ZONE}", f"mta-sts.dinkes.{ZONE}"]


def test_implicit_tls_on_the_printout_puts_imaps_first_and_cnames_follow_the_web_name():
    s = settings(mail_client={"imap_port": 993, "imap_security": "SSL/TLS", "smtp_port": 587},
                 web_cname=f"web.{ZONE}")
    recs = by_name(model.mail_client_records([req("dinkes")], s))
    assert recs[("_imaps._tcp.dinkes", "SRV")] == [f"0 1 993 {MAIL}."]
    assert recs[("_imap._tcp.dinkes", "SRV")] == [f"10 1 143 {MAIL}."]
    assert recs[("autoconfig.dinkes", "CNAME")] == [f"web.{ZONE}."]


def test_the_records_load_into_a_zone():
    lines = [f"{r['name']} 3600 IN {r['type']} {r['value']}"
             for r in model.mail_client_records([req("dinkes"), req("x", "parent")], settings())]
    zone = dns.zone.from_text("@ 3600 IN SOA ns1 h 1 2 3 4 5\n@ 3600 IN NS ns1\n"
                              "ns1 3600 IN A 192.0.2.1\n" + "\n".join(lines) + "\n",
                              origin=ZONE, relativize=True)
    srv = next(iter(zone.find_rdataset("_submission._tcp.dinkes", dns.rdatatype.SRV)))
    assert (srv.port, srv.target.derelativize(zone.origin).to_text()) == (587, f"{MAIL}.")
