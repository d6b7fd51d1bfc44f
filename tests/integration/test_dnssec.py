"""The signed zone, checked by validators from outside the project.

The lab's primary signs the rendered zone (BIND's `dnssec-policy`, inline
signing). `delv`, given the lab's key as its only trust anchor, must call an
agency's address and mail exchanger "fully validated"; `ldns-verify-zone`
must accept the zone as a secondary receives it (AXFR with the TSIG key) and
refuse a copy whose signature or data was tampered with; an anchor that is
not the zone's key must make validation fail. A run that changes nothing
leaves the keys and the unsigned serial alone, whatever BIND re-signed; a new
name is signed as soon as it is served.
"""

from __future__ import annotations

import hashlib
import re
import smtplib
import ssl
import subprocess
from pathlib import Path

import dns.dnssec
import dns.query
import dns.rdataset
import dns.rdatatype
import dns.tsigkeyring
import dns.zone
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .conftest import VENV_BIN, changed_tasks, playbook, run
from .test_dns import (
    DNS,
    SECONDARY_PORT,
    ZONE,
    ZONE_FILE,
    changed,
    dns_playbook,
    eventually,
    query,
    requests_dir_with,
    serial,
    tsig_key,
)
from .test_dns import secondary as _secondary

KEY_DIR = Path("/var/lib/bind/keys")
MAIL = f"mail.{ZONE}"
# The lab's secondary (a second named on port 5300), as tests/integration/test_dns.py sets it up.
secondary = _secondary
AGENCY = f"dinkes.{ZONE}"


def zonestatus() -> dict[str, str]:
    result = run(["rndc", "zonestatus", ZONE])
    assert result.returncode == 0, result.stderr
    return dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)


def signing_keys() -> list[str]:
    """The zone's key-signing DNSKEYs (flags 257) in BIND's key directory, as text."""
    out = []
    for path in sorted(KEY_DIR.glob(f"K{ZONE}.+*.key")):
        for line in path.read_text().splitlines():
            fields = line.split()
            if line.startswith(";") or "DNSKEY" not in fields:
                continue
            rdata = fields[fields.index("DNSKEY") + 1:]
            if rdata[0] == "257":
                out.append(" ".join(rdata))
    return out


def anchor_file(path: Path, keys: list[str]) -> Path:
    lines = []
    for key in keys:
        flags, proto, alg, *material = key.split()
        lines.append(f'\t"{ZONE}." static-key {flags} {proto} {alg} "{"".join(material)}";')
    path.write_text("trust-anchors {\n" + "\n".join(lines) + "\n};\n")
    return path


def delv(anchor: Path, name: str, rdtype: str, port: int = 53) -> subprocess.CompletedProcess:
    return run(["delv", "-a", str(anchor), f"+root={ZONE}", "-p", str(port), f"@{DNS}",
                name, rdtype])


def transfer(settings) -> dns.zone.Zone:
    key = tsig_key(settings)
    keyring = dns.tsigkeyring.from_text({key["name"]: (key["algorithm"], key["secret"])})
    return dns.zone.from_xfr(dns.query.xfr(DNS, ZONE, keyring=keyring, keyname=key["name"],
                                           keyalgorithm=key["algorithm"], timeout=10))


def verify_zone(zone: dns.zone.Zone, path: Path) -> subprocess.CompletedProcess:
    path.write_text(zone.to_text(want_origin=True))
    return run(["ldns-verify-zone", str(path)])


@pytest.fixture(scope="module")
def anchor(lab_apply, tmp_path_factory):
    """The lab applied with this branch's DNS settings, and its key as a trust anchor."""
    result = dns_playbook()
    assert result.returncode == 0, result.stdout[-4000:]
    eventually(lambda: zonestatus().get("secure") == "yes")
    keys = signing_keys()
    assert len(keys) >= 1, "BIND made no key-signing key"
    return anchor_file(tmp_path_factory.mktemp("anchor") / "anchor.conf", keys)


def test_an_agency_s_address_and_mail_exchanger_are_fully_validated(anchor):
    for rdtype, data in (("A", "127.0.0.1"), ("MX", f"10 mail.{ZONE}.")):
        result = delv(anchor, AGENCY, rdtype)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.startswith("; fully validated"), result.stdout + result.stderr
        assert re.search(rf"^{re.escape(AGENCY)}\.\s+\d+\s+IN\s+{rdtype}\s+{re.escape(data)}$",
                         result.stdout, re.MULTILINE), result.stdout
        assert f"RRSIG\t{rdtype} 13 " in result.stdout  # ECDSA P-256, the policy's algorithm
    # A name that does not exist is proven absent, signed too.
    missing = delv(anchor, f"tidakada.{ZONE}", "A")
    assert "; negative response, fully validated" in missing.stdout, missing.stdout


def test_an_anchor_that_is_not_the_zone_s_key_fails_validation(anchor, tmp_path):
    made = run(["dnssec-keygen", "-q", "-K", str(tmp_path), "-a", "ECDSAP256SHA256", "-f", "KSK",
                ZONE])
    assert made.returncode == 0, made.stderr
    stranger = next(tmp_path.glob("K*.key")).read_text().split("DNSKEY", 1)[1].strip()
    assert stranger not in signing_keys()
    result = delv(anchor_file(tmp_path / "wrong.conf", [stranger]), AGENCY, "A")
    assert "fully validated" not in result.stdout
    assert "resolution failed" in result.stdout + result.stderr, result.stdout + result.stderr


def test_the_transferred_zone_verifies_and_a_tampered_copy_does_not(anchor, settings, tmp_path):
    zone = transfer(settings)
    assert zone.get_rdataset("@", "DNSKEY") is not None
    signature = zone.get_rdataset("dinkes", "RRSIG", covers="A")
    assert signature is not None and signature[0].algorithm == 13
    good = verify_zone(zone, tmp_path / "zone")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "Zone is verified and complete" in good.stdout

    # A forged address under the genuine signature.
    zone.replace_rdataset("dinkes", dns.rdataset.from_text("IN", "A", 3600, "192.0.2.66"))
    forged = verify_zone(zone, tmp_path / "forged")
    assert forged.returncode != 0, forged.stdout + forged.stderr
    assert f"Bogus DNSSEC signature for {AGENCY}.\tA" in forged.stderr, forged.stderr

    # The genuine address under a signature with one byte changed.
    zone = transfer(settings)
    raw = bytearray(signature[0].signature)
    raw[10] ^= 0xFF
    zone.replace_rdataset("dinkes", dns.rdataset.from_rdata(
        signature.ttl, signature[0].replace(signature=bytes(raw))))
    tampered = verify_zone(zone, tmp_path / "tampered")
    assert tampered.returncode != 0, tampered.stdout + tampered.stderr
    assert f"Bogus DNSSEC signature for {AGENCY}.\tA" in tampered.stderr, tampered.stderr


def test_a_run_without_changes_keeps_the_keys_and_the_unsigned_serial(anchor):
    keys_before = sorted(p.name for p in KEY_DIR.iterdir())
    file_serial = int(re.search(r"(\d+) ; serial", ZONE_FILE.read_text()).group(1))
    assert int(zonestatus()["serial"]) == file_serial
    # BIND re-signs by itself, raising the serial of its signed copy only.
    assert int(zonestatus()["signed serial"]) > 0
    result = dns_playbook()
    assert result.returncode == 0, result.stdout[-3000:]
    counts = changed(result.stdout)
    assert counts and not any(counts.values()), counts
    assert sorted(p.name for p in KEY_DIR.iterdir()) == keys_before
    assert int(zonestatus()["serial"]) == file_serial
    assert all(p.stat().st_mode & 0o077 == 0 for p in KEY_DIR.glob("*.private"))


def test_a_new_name_is_served_signed(anchor, tmp_path):
    label = f"ujisig.{ZONE}"
    try:
        result = dns_playbook("-e", f"sop_requests_dir={requests_dir_with(tmp_path, 'ujisig')}")
        assert result.returncode == 0, result.stdout[-3000:]
        validated = eventually(lambda: "; fully validated" in delv(anchor, label, "A").stdout)
        assert validated
    finally:
        restore = dns_playbook()
        assert restore.returncode == 0, restore.stdout[-3000:]
    gone = delv(anchor, label, "A")
    assert "; negative response, fully validated" in gone.stdout, gone.stdout


def test_sop_dnssec_ds_prints_the_ds_of_the_served_key(anchor, lab_apply):
    """The DS the registrar is given matches the key the zone serves (dnspython's own digest)."""
    answer = query(ZONE, "DNSKEY").answer
    served = [rd for rrset in answer for rd in rrset if rrset.rdtype == dns.rdatatype.DNSKEY
              and rd.flags == 257]
    assert served
    result = run([str(VENV_BIN / "sop"), "-i", "inventory/lab", "dnssec", "ds"])
    assert result.returncode == 0, result.stdout + result.stderr
    for key in served:
        ds = dns.dnssec.make_ds(f"{ZONE}.", key, "SHA256")
        assert f"IN DS {ds.to_text().upper()}" in result.stdout.upper(), result.stdout
    assert "registrar go.id" in result.stdout and "rndc dnssec -checkds" in result.stdout
    # The run report says it too, while the registrar has not published it.
    notes = " ".join(lab_apply["report"].get("notes", []))
    assert "DNSSEC: pasang rekaman DS" in notes and ds.to_text().upper() in notes.upper(), notes


def test_the_secondary_serves_the_signed_zone_fully_validated(anchor, secondary):
    eventually(lambda: serial(SECONDARY_PORT) == serial())
    for rdtype in ("A", "MX"):
        result = delv(anchor, AGENCY, rdtype, port=SECONDARY_PORT)
        assert result.stdout.startswith("; fully validated"), result.stdout + result.stderr
    missing = delv(anchor, f"tidakada.{ZONE}", "A", port=SECONDARY_PORT)
    assert "; negative response, fully validated" in missing.stdout, missing.stdout


def test_signing_turned_off_and_on_again_signs_what_the_file_says_now(anchor, tmp_path):
    """BIND keeps the signed copy of an earlier time of signing: turned on
    again, what it serves signed must be what the file says now, with the same key."""
    label = f"ujiulang.{ZONE}"
    keys = signing_keys()
    requests = f"sop_requests_dir={requests_dir_with(tmp_path, 'ujiulang')}"
    try:
        off = dns_playbook("-e", '{"bind_dnssec": false}', "-e", requests)
        assert off.returncode == 0, off.stdout[-3000:]
        assert "inline-signing" not in Path("/etc/bind/named.conf.local").read_text()
        assert eventually(lambda: zonestatus().get("secure") == "no")
        assert query(label, "A").answer  # served unsigned
        # DANE records only in a signed zone: none while it is not.
        assert ZONE_FILE.read_text().count("TLSA") == 0
        assert not query(f"_25._tcp.{MAIL}", "TLSA").answer
        on = dns_playbook("-e", requests)
        assert on.returncode == 0, on.stdout[-3000:]
        result = delv(anchor, label, "A")
        assert result.stdout.startswith("; fully validated"), result.stdout + result.stderr
        assert delv(anchor, f"_25._tcp.{MAIL}", "TLSA").stdout.startswith("; fully validated")
        # The same key as before: the DS at the parent stays right.
        assert signing_keys() == keys
    finally:
        restore = dns_playbook()
        assert restore.returncode == 0, restore.stdout[-3000:]


# --- DANE: TLSA 3 1 1 for the mail host ---------------------------------------------

MAIL_PORTS = (25, 465, 587)
LAB_MAIL_CERT = Path("/etc/sop-lab-ca/mail.crt")
LAB_MAIL_KEY = Path("/etc/sop-lab-ca/mail.key")


def tlsa(port: int, server_port: int = 53) -> set[str]:
    """The TLSA records the name server answers for the mail host's port, as text."""
    return {rd.to_text() for rrset in query(f"_{port}._tcp.{MAIL}", "TLSA", server_port).answer
            if rrset.rdtype == dns.rdatatype.TLSA for rd in rrset}


def spki_sha256(der_cert: bytes) -> str:
    spki = x509.load_der_x509_certificate(der_cert).public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def served_certificate(port: int) -> bytes:
    """The certificate Postfix presents on 127.0.0.1: STARTTLS on 25 and 587, TLS on 465.
    Not checked against any CA here: DANE 3 1 1 pins the key, whoever signed it."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if port == 465:
        with smtplib.SMTP_SSL(DNS, port, timeout=10, context=ctx) as smtp:
            return smtp.sock.getpeercert(binary_form=True)
    with smtplib.SMTP(DNS, port, timeout=10) as smtp:
        smtp.starttls(context=ctx)
        return smtp.sock.getpeercert(binary_form=True)


def assert_tlsa_matches_what_postfix_serves() -> str:
    """Every port has exactly the record of the key Postfix presents there; its hash."""
    hashes = {port: spki_sha256(served_certificate(port)) for port in MAIL_PORTS}
    assert len(set(hashes.values())) == 1, hashes
    digest = hashes[25]
    for port in MAIL_PORTS:
        assert tlsa(port) == {f"3 1 1 {digest}"}, (port, tlsa(port), digest)
    return digest


def test_the_mail_host_s_tlsa_records_are_fully_validated(anchor):
    result = delv(anchor, f"_25._tcp.{MAIL}", "TLSA")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("; fully validated"), result.stdout + result.stderr
    found = re.search(rf"^_25\._tcp\.{re.escape(MAIL)}\.\s+\d+\s+IN\s+TLSA\s+3 1 1 ([0-9A-F ]+)$",
                      result.stdout, re.MULTILINE)
    assert found, result.stdout
    assert tlsa(25) == {"3 1 1 " + found.group(1).replace(" ", "").lower()}
    assert re.search(r"\sRRSIG\s+TLSA 13 ", result.stdout), result.stdout  # ECDSA P-256
    # The same set on the three ports; none on a port Postfix does not serve.
    assert tlsa(25) and tlsa(25) == tlsa(465) == tlsa(587)
    assert not tlsa(2525)


def test_the_tlsa_data_is_the_key_postfix_serves_on_25_465_and_587(anchor):
    digest = assert_tlsa_matches_what_postfix_serves()
    # ... which is the key on the mail host (not a hash of something else).
    key = subprocess.run(["openssl", "pkey", "-in", str(LAB_MAIL_KEY), "-pubout", "-outform",
                          "DER"], capture_output=True, check=False)
    assert key.returncode == 0 and hashlib.sha256(key.stdout).hexdigest() == digest


def test_the_secondary_serves_the_tlsa_records_fully_validated(anchor, secondary):
    # Runs since (without the secondary in the inventory) stopped the notifies:
    # a run with it brings the secondary up to date.
    result = dns_playbook(inventories=[secondary])
    assert result.returncode == 0, result.stdout[-3000:]
    eventually(lambda: serial(SECONDARY_PORT) == serial())
    result = delv(anchor, f"_25._tcp.{MAIL}", "TLSA", port=SECONDARY_PORT)
    assert result.stdout.startswith("; fully validated"), result.stdout + result.stderr
    for port in MAIL_PORTS:
        assert tlsa(port, SECONDARY_PORT) == tlsa(port)


def test_a_certificate_issued_again_keeps_the_key_and_the_published_tlsa(anchor):
    """The lab CA issues the mail certificate again (it nears its end): the key,
    and so the TLSA record, stay; the zone is not even changed."""
    published = {port: tlsa(port) for port in MAIL_PORTS}
    key_before = LAB_MAIL_KEY.read_bytes()
    cert_before = LAB_MAIL_CERT.read_bytes()
    zone_serial = int(zonestatus()["serial"])
    # Every certificate "expires within" a renewal window longer than its life.
    result = playbook("-v", "-e", "lab_pki_renew_days=100000")
    assert result.returncode == 0, result.stdout[-4000:]
    assert f"issued {LAB_MAIL_CERT} again" in result.stdout, changed_tasks(result.stdout)
    assert LAB_MAIL_CERT.read_bytes() != cert_before
    assert LAB_MAIL_KEY.read_bytes() == key_before
    assert {port: tlsa(port) for port in MAIL_PORTS} == published
    assert int(zonestatus()["serial"]) == zone_serial
    assert_tlsa_matches_what_postfix_serves()


def test_a_next_key_s_hash_is_published_beside_the_current_one_and_a_bad_one_refused(anchor):
    """Changing the mail key: the next key's record first (README "DANE"); a hash
    that is not 64 hex digits stops the run before the zone changes."""
    current = tlsa(25)
    following = hashlib.sha256(b"the next mail key").hexdigest()
    try:
        result = dns_playbook("-e", f'{{"sop_mail_tlsa_next_spki": ["{following.upper()}"]}}')
        assert result.returncode == 0, result.stdout[-3000:]
        for port in MAIL_PORTS:
            assert tlsa(port) == current | {f"3 1 1 {following}"}, tlsa(port)
        validated = delv(anchor, f"_587._tcp.{MAIL}", "TLSA")
        assert validated.stdout.startswith("; fully validated"), validated.stdout
        zone_text = ZONE_FILE.read_text()
        bad = dns_playbook("-e", '{"sop_mail_tlsa_next_spki": ["not-a-hash"]}')
        assert bad.returncode != 0
        assert "64 hex digits" in bad.stdout, bad.stdout[-3000:]
        assert ZONE_FILE.read_text() == zone_text
    finally:
        restore = dns_playbook()
        assert restore.returncode == 0, restore.stdout[-3000:]
    assert tlsa(25) == current
