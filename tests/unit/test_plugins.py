"""BIND role filter plugins and templates: zone serials, records (storage: test_storage.py)."""

from __future__ import annotations

import base64
import importlib.util
import shutil
import subprocess
from pathlib import Path

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.zone
import jinja2
import pytest
import yaml

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


def test_live_serial_wins_over_the_file_when_content_changes():
    assert bind.bind_zone_serial(zone_text(2026113003, "abc"), "def", live_serial="2026120105",
                                 today="2026-11-30") == 2026120106


def test_a_live_serial_that_is_not_a_number_is_ignored():
    for live in (None, "", "  ", "SERVFAIL", "-5"):
        assert bind.bind_zone_serial(zone_text(2026113003, "abc"), "abc", live_serial=live,
                                     today="2026-11-30") == 2026113003


def test_soa_serial_is_read_from_dig_output():
    line = "ns1.example.go.id. hostmaster.example.go.id. 2026113004 3600 900 1209600 300"
    assert bind.bind_soa_serial(line) == 2026113004
    assert bind.bind_soa_serial(f";; warning\n{line}\n") == 2026113004
    for nothing in ("", None, ";; connection timed out; no servers could be reached"):
        assert bind.bind_soa_serial(nothing) == 0


def test_the_unsigned_serial_of_a_signed_zone_is_read_from_rndc_zonestatus():
    status = "name: example.go.id\ntype: primary\nserial: 2026113004\nsigned serial: 2026113009\n"
    assert bind.bind_soa_serial(status) == 2026113004
    assert bind.bind_soa_serial("signed serial: 2026113009\n") == 0


def test_150_changes_a_day_for_three_days_stay_ten_digits_and_increasing():
    text, serials = "", []
    for day in ("2026-11-30", "2026-12-01", "2026-12-02"):
        for i in range(150):
            live = serials[-1] if serials else None
            s = bind.bind_zone_serial(text, f"{day}-{i}", live_serial=live, today=day)
            serials.append(s)
            text = zone_text(s, f"{day}-{i}")
    assert all(b > a for a, b in zip(serials, serials[1:], strict=False))
    assert all(len(str(s)) == 10 and s < 2**32 for s in serials)


def test_a_serial_beyond_32_bits_is_refused():
    with pytest.raises(Exception, match="exceed"):
        bind.bind_zone_serial(zone_text(2**32 - 1, "abc"), "def", today="2026-11-30")


def wire_strings(rdata_text: str, rdtype: str = "TXT") -> list[bytes]:
    rd = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), rdata_text)
    return list(rd.strings)


def test_long_txt_is_split_into_strings_of_at_most_255_bytes():
    dkim = "v=DKIM1; k=rsa; p=" + base64.b64encode(bytes(range(256)) * 2).decode()
    text = bind.bind_txt(dkim)
    strings = wire_strings(text)
    assert len(strings) == -(-len(dkim) // 255) and len(strings) >= 3
    assert all(len(s) <= 255 for s in strings)
    assert b"".join(strings).decode() == dkim


def test_txt_escapes_quotes_backslashes_and_non_ascii():
    value = 'kata "kutip" \\ garis miring; Sumba Barat Daya – ' + "é" * 200
    strings = wire_strings(bind.bind_txt(value))
    assert all(len(s) <= 255 for s in strings)
    assert b"".join(strings).decode("utf-8") == value


def test_short_txt_is_one_quoted_string():
    assert bind.bind_txt("v=spf1 mx -all") == '"v=spf1 mx -all"'
    assert bind.bind_txt("") == '""'


def test_record_lines_quote_txt_and_keep_other_data():
    assert bind.bind_record({"name": "dinkes", "type": "TXT", "value": "v=spf1 mx -all"}) == \
        'dinkes\t\tIN\tTXT\t"v=spf1 mx -all"'
    # Already in zone-file syntax: written as it is.
    assert bind.bind_record({"name": "k._domainkey", "type": "TXT", "value": '"a" "b"'}).endswith(
        '\t"a" "b"')
    assert bind.bind_record({"name": "www", "type": "cname", "value": "web", "ttl": 300}) == \
        "www\t300\tIN\tCNAME\tweb"


@pytest.mark.parametrize("record, words", [
    ({"name": "x", "type": "A", "value": "192.0.2.1\nevil IN A 192.0.2.66"}, "control character"),
    ({"name": "x\ny", "type": "A", "value": "192.0.2.1"}, "control character"),
    ({"name": "x y", "type": "A", "value": "192.0.2.1"}, "not a relative DNS name"),
    ({"name": "x", "type": "A; rm", "value": "192.0.2.1"}, "not a record type"),
    ({"name": "x", "type": "A", "value": "192.0.2.1", "ttl": "1h"}, "not a number"),
    ({"name": "x", "type": "A"}, "lacks name, type or value"),
])
def test_records_that_could_break_the_zone_file_are_refused(record, words):
    with pytest.raises(Exception, match=words):
        bind.bind_record(record)


# --- The zone and named.conf templates, checked by BIND's own tools ----------

ZONE = "sumbabaratdayakab.go.id"
TEMPLATES = REPO / "roles" / "bind" / "templates"
BIND_DEFAULTS = yaml.safe_load((REPO / "roles" / "bind" / "defaults" / "main.yml").read_text())
CHECKZONE_FLAGS = ["-k", "fail", "-n", "fail", "-M", "fail", "-S", "fail"]


def render(template: str, **variables) -> str:
    # Like Ansible's template module: trim_blocks, no HTML escaping (config files).
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),  # noqa: S701
                             trim_blocks=True, undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True)
    env.filters.update(bind.FilterModule().filters())
    # Ansible's own `bool` (the zone template reads bind_dnssec with it).
    env.filters["bool"] = lambda v: v if isinstance(v, bool) else str(v).lower() in (
        "yes", "on", "1", "true")
    base = {"ansible_managed": "Ansible managed", "bind_zone_name": ZONE, "bind_zone_ttl": 3600,
            "bind_zone_hostmaster": f"host.master@{ZONE}",
            "bind_zone_soa": {"refresh": 3600, "retry": 900, "expire": 1209600,
                              "negative_ttl": 300},
            "bind_zone_nameservers": [{"name": "ns1", "ipv4": "192.0.2.53"},
                                      {"name": "ns2", "ipv4": "192.0.2.54",
                                       "ipv6": "2001:db8::54"}],
            "bind_zone_records": [], "__bind_zone_hash": "abc", "__bind_zone_serial": 2026113000}
    return env.get_template(template).render(**{**base, **variables})


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    assert path, f"{name} is missing: scripts/bootstrap installs bind9-utils"
    return path


def checkzone(tmp_path, text: str) -> subprocess.CompletedProcess:
    zone_file = tmp_path / "db.zone"
    zone_file.write_text(text)
    return subprocess.run([tool("named-checkzone"), *CHECKZONE_FLAGS, ZONE, str(zone_file)],
                          capture_output=True, text=True)


def test_the_rendered_zone_passes_named_checkzone_with_long_txt(tmp_path):
    dkim = "v=DKIM1; k=rsa; p=" + "A" * 392
    records = [
        {"name": "@", "type": "A", "value": "192.0.2.80"},
        {"name": "web", "type": "A", "value": "192.0.2.80"},
        {"name": "mail", "type": "A", "value": "192.0.2.25"},
        {"name": "dinkes", "type": "A", "value": "192.0.2.80"},
        {"name": "www.dinkes", "type": "CNAME", "value": f"web.{ZONE}."},
        {"name": "dinkes", "type": "MX", "value": f"10 mail.{ZONE}."},
        {"name": "dinkes", "type": "TXT", "value": "v=spf1 mx -all"},
        {"name": "mail._domainkey.dinkes", "type": "TXT", "value": dkim, "ttl": 600},
    ]
    text = render("var/lib/bind/db.zone.j2", bind_zone_records=records)
    result = checkzone(tmp_path, text)
    assert result.returncode == 0, result.stdout + result.stderr
    zone = dns.zone.from_text(text, origin=ZONE, relativize=True, check_origin=True)
    soa = zone.get_rdataset("@", "SOA")[0]
    assert soa.serial == 2026113000 and soa.rname.to_text() == "host\\.master"
    txt = zone.get_rdataset("mail._domainkey.dinkes", "TXT")
    assert txt.ttl == 600 and b"".join(txt[0].strings).decode() == dkim
    assert all(len(s) <= 255 for s in txt[0].strings)
    assert zone.get_rdataset("ns2", "AAAA")[0].address == "2001:db8::54"


def test_tlsa_records_are_rendered_only_in_a_signed_zone(tmp_path):
    """DANE: 3 1 1 per port and hash under the mail host; none when unsigned."""
    current, following = "AB" * 32, "cd" * 32
    tlsa = [{"name": f"mail.{ZONE}.", "spki_sha256": [current, following]}]
    records = [{"name": "mail", "type": "A", "value": "192.0.2.25"}]
    signed = render("var/lib/bind/db.zone.j2", bind_zone_records=records, bind_dnssec=True,
                    bind_tlsa=tlsa)
    result = checkzone(tmp_path, signed)
    assert result.returncode == 0, result.stdout + result.stderr
    zone = dns.zone.from_text(signed, origin=ZONE, relativize=True, check_origin=True)
    for port in (25, 465, 587):
        rdataset = zone.get_rdataset(f"_{port}._tcp.mail", "TLSA")
        assert rdataset is not None and rdataset.ttl == 3600
        assert sorted(rd.to_text() for rd in rdataset) == [f"3 1 1 {current.lower()}",
                                                          f"3 1 1 {following}"]
    assert len([n for n in zone.nodes if str(n).endswith("._tcp.mail")]) == 3
    unsigned = render("var/lib/bind/db.zone.j2", bind_zone_records=records, bind_dnssec=False,
                      bind_tlsa=tlsa)
    assert "TLSA" not in unsigned
    assert "TLSA" not in render("var/lib/bind/db.zone.j2", bind_zone_records=records,
                                bind_tlsa=tlsa)


@pytest.mark.parametrize("bad, message", [
    ({"name": "rusak", "type": "A", "value": "300.1.2.3"}, "bad dotted quad"),
    ({"name": "web", "type": "CNAME", "value": "mail"}, "CNAME and other data"),
    ({"name": "rusak", "type": "MX", "value": "10 web"}, ""),  # fine: web has an address
])
def test_named_checkzone_refuses_what_the_role_must_never_serve(tmp_path, bad, message):
    records = [{"name": "web", "type": "A", "value": "192.0.2.80"}, bad]
    result = checkzone(tmp_path, render("var/lib/bind/db.zone.j2", bind_zone_records=records))
    if message:
        assert result.returncode != 0 and message in result.stdout
    else:
        assert result.returncode == 0, result.stdout


def conf_vars(tmp_path, **extra) -> dict:
    return {"__bind_key_file": str(tmp_path / "transfer.key"),
            "__bind_zone_file": f"/var/lib/bind/db.{ZONE}", "__bind_working_dir": "/var/cache/bind",
            "__bind_pid_file": "/run/named/x.pid", "bind_instance": "", "bind_port": 53,
            "bind_listen_ipv4": ["127.0.0.1"], "bind_listen_ipv6": ["none"],
            "bind_tsig_key": {"name": f"transfer.{ZONE}", "algorithm": "hmac-sha256",
                              "secret": base64.b64encode(b"k" * 32).decode()},
            "bind_role": "primary", "bind_also_notify": [], "bind_primaries": [],
            "bind_dnssec": False, "bind_dnssec_policy": BIND_DEFAULTS["bind_dnssec_policy"],
            "bind_dnssec_key_directory": "/var/lib/bind/keys", **extra}


def checkconf(tmp_path, variables: dict) -> subprocess.CompletedProcess:
    if variables["bind_tsig_key"]:
        (tmp_path / "transfer.key").write_text(render("etc/bind/transfer.key.j2", **variables))
    conf = tmp_path / "named.conf"
    conf.write_text(render("etc/bind/named.conf.options.j2", **variables)
                    + render("etc/bind/named.conf.local.j2", **variables))
    return subprocess.run([tool("named-checkconf"), str(conf)], capture_output=True, text=True)


@pytest.mark.parametrize("mode", ["primary-alone", "primary-notifying", "secondary", "no-key"])
def test_named_conf_renders_pass_named_checkconf(tmp_path, mode):
    variables = conf_vars(tmp_path)
    if mode == "primary-notifying":
        variables["bind_also_notify"] = [{"address": "192.0.2.11"},
                                         {"address": "127.0.0.1", "port": 5300}]
    elif mode == "secondary":
        variables.update(bind_role="secondary", bind_primaries=[{"address": "192.0.2.10"}],
                         bind_instance="ns2", __bind_working_dir=str(tmp_path))
    elif mode == "no-key":
        variables["bind_tsig_key"] = {}
    result = checkconf(tmp_path, variables)
    assert result.returncode == 0, result.stdout + result.stderr
    local = render("etc/bind/named.conf.local.j2", **variables)
    options = render("etc/bind/named.conf.options.j2", **variables)
    assert "recursion no;" in options and "allow-transfer { none; };" in options
    assert variables["bind_tsig_key"].get("secret", "@@") not in local + options
    if mode.startswith("primary"):
        assert f'allow-transfer {{ key "transfer.{ZONE}"; }};' in local
    if mode == "primary-notifying":
        assert f'127.0.0.1 port 5300 key "transfer.{ZONE}";' in local and "notify explicit" in local
    if mode == "secondary":
        assert f'192.0.2.10 port 53 key "transfer.{ZONE}";' in local
        assert "type secondary;" in local and "allow-transfer { none; };" in local
    if mode == "no-key":
        assert "key" not in local and "allow-transfer { none; };" in local


@pytest.mark.parametrize("role", ["primary", "secondary"])
def test_a_signed_zone_has_its_policy_and_inline_signing_on_the_primary_only(tmp_path, role):
    variables = conf_vars(tmp_path, bind_dnssec=True)
    if role == "secondary":
        variables.update(bind_role="secondary", bind_primaries=[{"address": "192.0.2.10"}],
                         bind_instance="ns2", __bind_working_dir=str(tmp_path))
    result = checkconf(tmp_path, variables)
    assert result.returncode == 0, result.stdout + result.stderr
    local = render("etc/bind/named.conf.local.j2", **variables)
    if role == "primary":
        assert 'dnssec-policy "sop" {' in local and "inline-signing yes;" in local
        assert "csk key-directory lifetime unlimited algorithm ecdsap256sha256;" in local
        assert "parent-ds-ttl 86400;" in local and 'key-directory "/var/lib/bind/keys";' in local
    else:
        assert "dnssec-policy" not in local and "inline-signing" not in local


def test_turning_signing_off_goes_through_bind_s_insecure_policy(tmp_path):
    variables = conf_vars(tmp_path, bind_dnssec=True, bind_dnssec_policy={"name": "insecure"})
    result = checkconf(tmp_path, variables)
    assert result.returncode == 0, result.stdout + result.stderr
    local = render("etc/bind/named.conf.local.j2", **variables)
    assert 'dnssec-policy "insecure";' in local and "inline-signing yes;" in local
    assert "dnssec-policy \"insecure\" {" not in local
    off = render("etc/bind/named.conf.local.j2", **conf_vars(tmp_path))
    assert "dnssec-policy" not in off and "inline-signing" not in off


def test_acme_challenge_zones_are_delegated_and_take_only_their_txt(tmp_path):
    """ACME DNS-01: each challenge name is a zone of its own on the primary,
    delegated from the main zone, where the ACME key may change TXT records
    of that one name only (the main zone never takes updates)."""
    acme = {"bind_acme_zones": [f"_acme-challenge.{ZONE}", f"_acme-challenge.mail.{ZONE}"],
            "bind_acme_key": {"name": "sop-acme", "algorithm": "hmac-sha256",
                              "secret": base64.b64encode(b"a" * 32).decode()},
            "__bind_acme_key_file": str(tmp_path / "acme.key")}
    variables = conf_vars(tmp_path, **acme)
    (tmp_path / "acme.key").write_text(render("etc/bind/acme.key.j2", **variables))
    result = checkconf(tmp_path, variables)
    assert result.returncode == 0, result.stdout + result.stderr
    local = render("etc/bind/named.conf.local.j2", **variables)
    assert acme["bind_acme_key"]["secret"] not in local
    for name in acme["bind_acme_zones"]:
        assert f'zone "{name}" {{' in local
        assert f"update-policy {{ grant sop-acme name {name}. TXT; }};" in local
    main = local.split("// ACME DNS-01")[0]
    assert "update" not in main and "allow-update" not in main
    text = render("var/lib/bind/db.zone.j2", **acme,
                  bind_zone_records=[{"name": "mail", "type": "A", "value": "192.0.2.25"}])
    assert checkzone(tmp_path, text).returncode == 0, text
    zone = dns.zone.from_text(text, origin=ZONE, relativize=True, check_origin=True)
    assert [ns.target.derelativize(zone.origin).to_text()
            for ns in zone.get_rdataset("_acme-challenge", "NS")] \
        == [f"ns1.{ZONE}."]
    assert zone.get_rdataset("_acme-challenge.mail", "NS") is not None
    # The challenge zones themselves, as the role writes them once.
    for name in acme["bind_acme_zones"]:
        own = tmp_path / f"acme.{name}"
        own.write_text(render("var/lib/bind/acme.zone.j2", item=name))
        checked = subprocess.run([tool("named-checkzone"), name, str(own)],
                                 capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout
    # Secondaries get no challenge zone (they answer with the delegation).
    secondary = render("etc/bind/named.conf.local.j2",
                       **{**variables, "bind_role": "secondary",
                          "bind_primaries": [{"address": "192.0.2.10"}]})
    assert "_acme-challenge" not in secondary
