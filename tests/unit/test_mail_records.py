"""Mail authentication records (SPF, DMARC, DKIM) and the DKIM key filter."""

from __future__ import annotations

import base64
import importlib.util
import re
from pathlib import Path

import dns.rdatatype
import dns.zone
import pytest

from sop import model

REPO = Path(__file__).resolve().parents[2]
ZONE = "sumbabaratdayakab.go.id"


def _load(path: str):
    spec = importlib.util.spec_from_file_location(Path(path).stem, REPO / path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


opendkim = _load("roles/opendkim/filter_plugins/opendkim.py")

# A 2048-bit RSA public key is 294 bytes of DER: 392 characters of base64.
KEY_B64 = base64.b64encode(bytes(range(256)) + bytes(38)).decode()


def req(label, mail="subdomain"):
    domain = ZONE if mail == "parent" else f"{label}.{ZONE}"
    return {"subdomain": label, "mail": {"domain": mail, "address_domain": domain,
                                         "mailboxes": [], "aliases": []}}


def keys_for(*domains):
    return opendkim.opendkim_public_keys([f"{d} {KEY_B64}" for d in domains], "mail")


def test_txt_rdata_cuts_long_text_into_255_byte_strings():
    text = "v=DKIM1; k=rsa; p=" + KEY_B64
    rdata = model.txt_rdata(text)
    parts = re.findall(r'"([^"]*)"', rdata)
    assert rdata == " ".join(f'"{p}"' for p in parts)
    assert [len(p) for p in parts] == [255, len(text) - 255]
    assert "".join(parts) == text
    assert model.txt_rdata("v=spf1 mx -all") == '"v=spf1 mx -all"'
    assert model.txt_rdata('a"b\\c') == '"a\\"b\\\\c"'


def test_txt_rdata_round_trips_through_a_zone_parser():
    text = "v=DKIM1; h=sha256; k=rsa; s=email; p=" + KEY_B64
    zone = dns.zone.from_text(
        f"@ 3600 IN SOA ns1 h 1 2 3 4 5\n@ 3600 IN NS ns1\nns1 3600 IN A 192.0.2.1\n"
        f"mail._domainkey.dinkes 3600 IN TXT {model.txt_rdata(text)}\n",
        origin=ZONE, relativize=True)
    rdataset = zone.find_rdataset("mail._domainkey.dinkes", dns.rdatatype.TXT)
    strings = next(iter(rdataset)).strings
    assert all(len(s) <= 255 for s in strings) and len(strings) > 1
    assert b"".join(strings).decode() == text


def test_mail_auth_records_for_subdomain_and_parent_domains():
    reqs = [req("dinkes"), req("bappeda", mail="parent"), req("kominfo", mail="parent")]
    records = model.mail_auth_records(
        reqs, {"zone": ZONE, "dmarc_rua": f"dmarc@{ZONE}"}, keys_for(f"dinkes.{ZONE}", ZONE))
    by_name = {}
    for r in records:
        assert r["type"] == "TXT"
        by_name.setdefault(r["name"], []).append(r["value"])
    assert by_name["dinkes"] == ['"v=spf1 mx -all"']
    assert by_name["@"] == ['"v=spf1 mx -all"'], "the parent domain once"
    assert by_name["_dmarc.dinkes"] == [f'"v=DMARC1; p=quarantine; rua=mailto:dmarc@{ZONE}"']
    assert by_name["_dmarc"] == [f'"v=DMARC1; p=quarantine; rua=mailto:dmarc@{ZONE}"']
    assert by_name["mail._domainkey"][0].startswith('"v=DKIM1; h=sha256; k=rsa; s=email; p=')
    assert "mail._domainkey.dinkes" in by_name
    assert len(records) == 6


def test_mail_auth_records_take_the_inventory_policy():
    records = model.mail_auth_records(
        [req("dinkes")], {"zone": ZONE, "spf": "v=spf1 mx a:out.example.net -all",
                          "dmarc_policy": "reject", "dmarc_rua": ""},
        keys_for(f"dinkes.{ZONE}"))
    values = {r["name"]: r["value"] for r in records}
    assert values["dinkes"] == '"v=spf1 mx a:out.example.net -all"'
    assert values["_dmarc.dinkes"] == '"v=DMARC1; p=reject"'


def test_a_mail_domain_without_a_dkim_key_is_an_error_unless_allowed():
    with pytest.raises(ValueError, match=f"no DKIM key known for dukcapil.{ZONE}"):
        model.mail_auth_records([req("dukcapil")], {"zone": ZONE}, [])
    records = model.mail_auth_records([req("dukcapil")], {"zone": ZONE, "require_dkim": False})
    assert {r["name"] for r in records} == {"dukcapil", "_dmarc.dukcapil"}


def test_requests_without_mail_add_no_records():
    assert model.mail_auth_records([{"subdomain": "pasola", "mail": None}], {"zone": ZONE}) == []


def test_opendkim_filter_makes_one_record_per_domain():
    keys = keys_for(f"dinkes.{ZONE}", ZONE)
    assert [k["domain"] for k in keys] == sorted([f"dinkes.{ZONE}", ZONE])
    assert keys[0]["name"] == f"mail._domainkey.{keys[0]['domain']}"
    assert keys[0]["txt"].endswith("p=" + KEY_B64)
    assert opendkim.opendkim_public_keys(["", "  "], "mail") == []


def test_opendkim_filter_refuses_a_broken_key():
    from ansible.errors import AnsibleFilterError

    with pytest.raises(AnsibleFilterError, match="dinkes"):
        opendkim.opendkim_public_keys([f"dinkes.{ZONE} not*base64"], "mail")
    with pytest.raises(AnsibleFilterError, match="empty"):
        opendkim.opendkim_public_keys([f"dinkes.{ZONE}"], "mail")
