"""Desired state derived from requests: pure functions, no root needed."""

from __future__ import annotations

import pytest

from sop import model

ZONE = "sumbabaratdayakab.go.id"


def req(label, hosting=True, mail="subdomain", boxes=("admin",), aliases=()):
    domain = ZONE if mail == "parent" else f"{label}.{ZONE}"
    return {
        "subdomain": label,
        "fqdn": f"{label}.{ZONE}",
        "agency": {"name": f"Dinas {label}", "abbreviation": label.upper()},
        "hosting": {"quota": "1G", "quota_bytes": 1 << 30} if hosting else None,
        "mail": None if mail is None else {
            "domain": mail,
            "address_domain": domain,
            "mailboxes": [{"local_part": b, "address": f"{b}@{domain}", "quota_bytes": 1 << 20}
                          for b in boxes],
            "aliases": [
                {"local_part": a, "address": f"{a}@{domain}", "to": [f"{boxes[0]}@{domain}"]}
                for a in aliases
            ],
        },
    }


SETTINGS = {"zone": ZONE, "web_ipv4": "192.0.2.80", "mail_hostname": f"mail.{ZONE}",
            "web_root": "/srv/www"}


def test_hosting_username_is_prefixed_and_fits_useradd():
    assert model.hosting_username("dinkes") == "w-dinkes"
    long_a = "a" * 40
    long_b = "a" * 39 + "b"
    assert len(model.hosting_username(long_a)) <= 32
    assert model.hosting_username(long_a) != model.hosting_username(long_b)


def test_accounts_cover_hosting_and_every_mailbox():
    ids = [a["id"] for a in model.accounts([req("dinkes", boxes=("admin", "kepala"))])]
    assert ids == ["hosting:dinkes", f"admin@dinkes.{ZONE}", f"kepala@dinkes.{ZONE}"]
    assert [a["id"] for a in model.accounts([req("x1", hosting=False)])] == [f"admin@x1.{ZONE}"]


def test_zone_records_for_each_request_form():
    records = model.zone_records(
        [req("dinkes"), req("bappeda", mail="parent"), req("pasola", mail=None),
         req("dukcapil", hosting=False)], SETTINGS)
    as_set = {(r["name"], r["type"], r["value"]) for r in records}
    assert ("dinkes", "A", "192.0.2.80") in as_set
    assert ("www.dinkes", "A", "192.0.2.80") in as_set
    assert ("dinkes", "MX", f"10 mail.{ZONE}.") in as_set
    assert ("@", "MX", f"10 mail.{ZONE}.") in as_set  # parent domain mail
    assert not any(n == "bappeda" and t == "MX" for n, t, _ in as_set)
    assert not any(n == "dukcapil" and t == "A" for n, t, _ in as_set)
    assert ("dukcapil", "MX", f"10 mail.{ZONE}.") in as_set
    assert not any(n == "pasola" and t == "MX" for n, t, _ in as_set)
    assert sum(1 for r in records if r["name"] == "@") == 1


def test_aaaa_records_only_when_the_inventory_has_ipv6():
    recs = model.zone_records([req("dinkes", mail=None)], {**SETTINGS, "web_ipv6": "2001:db8::80"})
    assert ("dinkes", "AAAA") in {(r["name"], r["type"]) for r in recs}


def test_web_cname_replaces_site_addresses_except_beside_a_mail_domain():
    reqs = [req("dinkes"), req("bappeda", mail="parent"), req("pasola", mail=None),
            req("dukcapil", hosting=False)]
    recs = model.zone_records(reqs, {**SETTINGS, "web_cname": f"web.{ZONE}",
                                     "web_ipv6": "2001:db8::80"})
    by_name = {}
    for r in recs:
        by_name.setdefault(r["name"], set()).add((r["type"], r["value"]))
    target = ("CNAME", f"web.{ZONE}.")
    for name in ("www.dinkes", "bappeda", "www.bappeda", "pasola", "www.pasola"):
        assert by_name[name] == {target}, name
    # dinkes receives mail: its MX cannot sit beside a CNAME, so it keeps addresses.
    assert by_name["dinkes"] == {("A", "192.0.2.80"), ("AAAA", "2001:db8::80"),
                                 ("MX", f"10 mail.{ZONE}.")}
    assert by_name["dukcapil"] == {("MX", f"10 mail.{ZONE}.")}


def test_no_web_cname_means_address_records():
    for cname in (None, ""):
        recs = model.zone_records([req("pasola", mail=None)], {**SETTINGS, "web_cname": cname})
        assert {r["type"] for r in recs} == {"A"}


def test_mail_data_joins_hashes_and_lists_domains_once():
    reqs = [req("dinkes", aliases=("info",)), req("bappeda", mail="parent"),
            req("kominfo", mail="parent", boxes=("kominfo",))]
    hashes = {a["id"]: f"$6$h-{a['id']}" for a in model.accounts(reqs)}
    data = model.mail_data(reqs, hashes)
    assert data["domains"] == [f"dinkes.{ZONE}", ZONE]
    addresses = [m["address"] for m in data["mailboxes"]]
    assert addresses == sorted(addresses)
    assert all(m["hash"] == f"$6$h-{m['address']}" for m in data["mailboxes"])
    assert data["aliases"] == [{"address": f"info@dinkes.{ZONE}", "to": [f"admin@dinkes.{ZONE}"]}]


def test_mail_data_refuses_a_mailbox_without_a_hash():
    with pytest.raises(KeyError):
        model.mail_data([req("dinkes")], {})


def test_vhosts_and_hosting_accounts_share_the_layout():
    reqs = [req("dinkes"), req("dukcapil", hosting=False)]
    sites = model.vhosts(reqs, SETTINGS)
    assert [s["name"] for s in sites] == ["dinkes"]
    assert sites[0]["server_names"] == [f"dinkes.{ZONE}", f"www.dinkes.{ZONE}"]
    assert sites[0]["root"] == "/srv/www/dinkes/public"
    accts = model.hosting_accounts(reqs, {"hosting:dinkes": "$6$x"}, SETTINGS)
    assert accts == [{"name": "w-dinkes", "home": "/srv/www/dinkes", "hash": "$6$x",
                      "comment": "DINKES", "quota_bytes": 1 << 30}]
    assert sites[0]["owner"] == accts[0]["name"]


def test_storage_demand_sums_quotas_per_path():
    demand = model.storage_demand([req("dinkes", boxes=("a", "b")), req("pasola", mail=None)],
                                  "/var/mail/vhosts", "/srv/www")
    assert demand == [
        {"path": "/var/mail/vhosts", "bytes": 2 << 20, "kind": "mail"},
        {"path": "/srv/www", "bytes": 2 << 30, "kind": "web"},
    ]
