"""The regency zone on the lab's BIND, observed from outside.

Every record the examples need is answered; the serial stays on a run that
changes nothing and rises above the live one on a change; a broken render is
refused while the old zone keeps answering; check mode shows the record
changes and changes nothing; zone transfers need the TSIG key; a second named
on 127.0.0.1:5300, configured by the role as a secondary, follows the primary.
Whatever a test adds (a request, the secondary) is taken away again.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import re
import shutil
import signal
import time
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.xfr
import dns.zone
import pytest

from .conftest import REPO, VENV_BIN, playbook, recap, run, snapshot

DNS = "127.0.0.1"
ZONE = "sumbabaratdayakab.go.id"
ZONE_FILE = Path(f"/var/lib/bind/db.{ZONE}")
SECONDARY_PORT = 5300
SECONDARY_INSTANCE = "labns2"
SECONDARY_INVENTORY = f"""\
# A second named on this host, configured by the bind role as a secondary.
all:
  hosts:
    lab-ns2:
      ansible_connection: local
      ansible_python_interpreter: /usr/bin/python3  # as the lab host: Debian's, with python3-apt
      sop_dns_endpoint: {{address: 127.0.0.1, port: {SECONDARY_PORT}}}
      bind_instance: {SECONDARY_INSTANCE}
      bind_control_port: 9530
  children:
    dns_secondary:
      hosts:
        lab-ns2:
"""


def _load_bind_filters():
    path = REPO / "roles" / "bind" / "filter_plugins" / "bind_zone.py"
    spec = importlib.util.spec_from_file_location("bind_zone", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


bind = _load_bind_filters()


# --- Helpers ---------------------------------------------------------------

def query(name: str, rdtype: str, port: int = 53) -> dns.message.Message:
    fqdn = name if name.endswith(".") else f"{name}."
    q = dns.message.make_query(fqdn, rdtype)
    q.flags &= ~dns.flags.RD
    return dns.query.udp(q, DNS, port=port, timeout=3)


def ask(name: str, rdtype: str, port: int = 53) -> list[str]:
    want = dns.rdatatype.from_text(rdtype)
    r = query(name, rdtype, port)
    return sorted(rd.to_text() for rrset in r.answer if rrset.rdtype == want for rd in rrset)


def serial(port: int = 53) -> int:
    r = query(ZONE, "SOA", port)
    return r.answer[0][0].serial


def file_serial() -> int:
    """The serial of the rendered (unsigned) zone file. With inline signing the
    served serial is the signed zone's, which BIND raises on its own when it
    signs again, so a diff of the file is compared with this one."""
    found = re.search(r"^\s+(\d+) ; serial$", ZONE_FILE.read_text(), re.MULTILINE)
    assert found, ZONE_FILE
    return int(found.group(1))


def eventually(check, timeout: float = 20.0, step: float = 0.3):
    """Poll ``check`` until it returns a true value or the time is up."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (dns.exception.DNSException, OSError, IndexError) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(step)
    raise AssertionError(f"not within {timeout} s: last result {last!r}")


def dns_playbook(*extra: str, inventories=(), book: str = "playbooks/dns.yml"):
    args = []
    for inv in ("inventory/lab", *inventories):
        args += ["-i", str(inv)]
    return run([str(VENV_BIN / "ansible-playbook"), *args, book, *extra])


def tsig_key(settings) -> dict:
    from sop.register import Register, vault_password

    register = Register(settings.path("sop_register_file"),
                        vault_password(settings.path("sop_vault_password_file")))
    name = settings.get("sop_dns_tsig_key_name")
    return {"name": name, **register.keys[name]}


def assert_no_secret(output: str, key: dict) -> None:
    assert key["secret"] not in output, "the TSIG secret leaked into the output"
    assert 'secret "' not in output, "a key file's content showed in the output"


def expected_records(settings, requests, web_cname: str = "") -> dict[tuple[str, str], set]:
    """(owner FQDN, type) -> rdata texts the zone must answer, as dnspython writes them."""
    from sop.model import zone_records

    origin = dns.name.from_text(ZONE)
    recs = list(settings.get("sop_zone_base_records")) + zone_records(
        requests, {"zone": ZONE, "web_ipv4": settings.get("sop_web_ipv4"),
                   "web_cname": web_cname, "mail_hostname": settings.get("sop_mail_hostname")})
    for ns in settings.get("sop_nameservers"):
        recs.append({"name": "@", "type": "NS", "value": f"{ns['name']}.{ZONE}."})
        if ns.get("ipv4"):
            recs.append({"name": ns["name"], "type": "A", "value": ns["ipv4"]})
    out: dict[tuple[str, str], set] = {}
    for rec in recs:
        rdata_text = bind.bind_record(rec).split("\t", 4)[4]
        rdata = dns.rdata.from_text(dns.rdataclass.IN, rec["type"], rdata_text, origin=origin,
                                    relativize=False)
        owner = ZONE if rec["name"] == "@" else f"{rec['name']}.{ZONE}"
        out.setdefault((owner, rec["type"].upper()), set()).add(rdata.to_text())
    return out


def assert_zone_answers(expected: dict[tuple[str, str], set], port: int = 53) -> None:
    for (owner, rdtype), values in expected.items():
        r = query(owner, rdtype, port)
        assert r.flags & dns.flags.AA, f"{owner} {rdtype}: not authoritative"
        got = {rd.to_text() for rrset in r.answer
               if rrset.rdtype == dns.rdatatype.from_text(rdtype) for rd in rrset}
        if rdtype == "TXT":  # other TXT at the same name (mail records) may come along
            assert values <= got, (owner, rdtype, got)
        else:
            assert got == values, (owner, rdtype, got)


def requests_dir_with(tmp_path: Path, label: str) -> Path:
    """The lab examples plus one web-only request named ``label``."""
    target = tmp_path / "requests"
    target.mkdir()
    for src in (REPO / "lab" / "requests").glob("*.yml"):
        shutil.copy(src, target / src.name)
    text = (REPO / "lab" / "requests" / "pasola.yml").read_text()
    assert "subdomain: pasola" in text
    (target / f"{label}.yml").write_text(
        text.replace("subdomain: pasola", f"subdomain: {label}")
            .replace("Festival Pasola 2027", f"Uji DNS {label}"))
    return target


def changed(output: str) -> dict[str, int]:
    return {host: c["changed"] for host, c in recap(output).items()}


# --- Answers -----------------------------------------------------------------

def test_every_record_of_the_examples_answers_at_the_lab_dns(settings, requests):
    expected = expected_records(settings, requests)
    assert len(expected) > 10
    assert_zone_answers(expected)
    soa = query(ZONE, "SOA").answer[0][0]
    assert soa.mname.to_text() == f"ns1.{ZONE}." and soa.rname.to_text() == f"hostmaster.{ZONE}."
    assert len(str(soa.serial)) == 10


def test_the_lab_dns_is_authoritative_only_and_hides_its_version(lab_apply):
    r = dns.query.udp(dns.message.make_query("example.com", "A"), DNS, timeout=3)
    assert r.rcode() == dns.rcode.REFUSED and not r.answer
    r = query(ZONE, "SOA")
    assert r.flags & dns.flags.AA and not r.flags & dns.flags.RA
    # The server tells nothing of itself: no version, host name or server id.
    for name in ("version.bind", "hostname.bind", "id.server", "version.server"):
        r = dns.query.udp(dns.message.make_query(name, "TXT", rdclass="CH"), DNS, timeout=3)
        assert r.rcode() in (dns.rcode.NOERROR, dns.rcode.REFUSED), (name, r.rcode())
        assert r.answer == [], (name, r.answer)


# What a handful of names must answer, written out by hand from lab/requests and
# inventory/lab (not computed by the code that writes the zone).
SAMPLE = {
    (f"dinkes.{ZONE}", "A"): ["127.0.0.1"],
    (f"dinkes.{ZONE}", "MX"): [f"10 mail.{ZONE}."],
    (f"dinkes.{ZONE}", "AAAA"): [],
    (f"_dmarc.dinkes.{ZONE}", "TXT"): [
        f'"v=DMARC1; p=quarantine; rua=mailto:dmarc@{ZONE}"'],
    (f"bappeda.{ZONE}", "A"): ["127.0.0.1"],
    (f"bappeda.{ZONE}", "MX"): [],  # its mail is on the parent domain
    (ZONE, "MX"): [f"10 mail.{ZONE}."],
    (ZONE, "NS"): [f"ns1.{ZONE}."],
    (f"dukcapil.{ZONE}", "A"): [],  # mail only
    (f"dukcapil.{ZONE}", "MX"): [f"10 mail.{ZONE}."],
    (f"pasola.{ZONE}", "A"): ["127.0.0.1"],
    (f"mail.{ZONE}", "A"): ["127.0.0.1"],
    (f"www.{ZONE}", "A"): ["127.0.0.1"],
}


def test_a_sample_of_names_answers_what_was_written_by_hand(lab_apply):
    for (name, rdtype), values in SAMPLE.items():
        r = query(name, rdtype)
        assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA, (name, rdtype)
        assert ask(name, rdtype) == values, (name, rdtype)
    assert "v=spf1 mx -all" in " ".join(ask(f"dinkes.{ZONE}", "TXT"))
    missing = query(f"tidakada.{ZONE}", "A")
    assert missing.rcode() == dns.rcode.NXDOMAIN and missing.answer == []


# --- Zone transfers ------------------------------------------------------------

def test_a_zone_transfer_needs_the_key(settings, lab_apply):
    key = tsig_key(settings)
    with pytest.raises(dns.xfr.TransferError) as refused:
        dns.zone.from_xfr(dns.query.xfr(DNS, ZONE, timeout=5))
    assert refused.value.rcode == dns.rcode.REFUSED
    wrong = dns.tsigkeyring.from_text({key["name"]: (key["algorithm"], "d3JvbmcK" * 4)})
    with pytest.raises((dns.xfr.TransferError, dns.tsig.PeerError)):
        dns.zone.from_xfr(dns.query.xfr(DNS, ZONE, keyring=wrong, keyname=key["name"],
                                        keyalgorithm=key["algorithm"], timeout=5))
    keyring = dns.tsigkeyring.from_text({key["name"]: (key["algorithm"], key["secret"])})
    zone = dns.zone.from_xfr(dns.query.xfr(DNS, ZONE, keyring=keyring, keyname=key["name"],
                                           keyalgorithm=key["algorithm"], timeout=5))
    assert zone.get_rdataset("@", "SOA")[0].serial == serial()
    assert zone.get_rdataset("mail", "A") is not None
    key_file = Path("/etc/bind/transfer.key")
    assert key_file.stat().st_mode & 0o777 == 0o640 and key_file.stat().st_uid == 0


# --- Serials, check mode, refusal ------------------------------------------------

def test_a_dns_run_without_changes_keeps_the_serial_and_the_files(settings, lab_apply):
    before_serial, before_files = serial(), snapshot()
    result = dns_playbook()
    assert result.returncode == 0, result.stdout[-3000:]
    assert changed(result.stdout) and not any(changed(result.stdout).values()), \
        changed(result.stdout)
    assert serial() == before_serial
    assert snapshot() == before_files
    assert_no_secret(result.stdout + result.stderr, tsig_key(settings))


def test_check_mode_shows_the_record_changes_and_changes_nothing(settings, lab_apply, tmp_path):
    """The whole site.yml in --check --diff: zone diff shown, nothing written anywhere.

    A new key name is asked for too, so the key file would change: its
    content must still not show.
    """
    key = tsig_key(settings)
    register_file = settings.path("sop_register_file")
    before_serial, before_files = file_serial(), snapshot()
    before_register = register_file.read_bytes()
    result = playbook("--check", "--diff", "-v",
                      "-e", f"sop_requests_dir={requests_dir_with(tmp_path, 'ujicek')}",
                      "-e", f"sop_dns_tsig_key_name=rotasi.{ZONE}")
    out = result.stdout + result.stderr
    assert result.returncode == 0, result.stdout[-4000:]
    assert "+ujicek\t\tIN\tA\t127.0.0.1" in out
    assert "+www.ujicek\t\tIN\tA\t127.0.0.1" in out
    assert re.search(rf"^-\t\t{before_serial} ; serial$", out, re.MULTILINE)
    new = re.search(r"^\+\t\t(\d+) ; serial$", out, re.MULTILINE)
    assert new and int(new.group(1)) > before_serial
    assert f'key "rotasi.{ZONE}"' in out  # the zone declaration's diff names the new key
    assert_no_secret(out, key)
    assert file_serial() == before_serial
    assert snapshot() == before_files
    assert register_file.read_bytes() == before_register
    assert query(f"ujicek.{ZONE}", "A").rcode() == dns.rcode.NXDOMAIN


def test_a_broken_render_is_refused_and_the_old_zone_still_answers(settings, requests):
    before_serial, before_files = serial(), snapshot()
    bad = [*settings.get("sop_zone_base_records"),
           {"name": "rusak", "type": "A", "value": "300.1.2.3"}]
    result = dns_playbook("-e", f'{{"sop_zone_base_records": {json.dumps(bad)}}}')
    assert result.returncode != 0
    assert "named-checkzone refused" in result.stdout
    assert "near '300.1.2.3': bad dotted quad" in result.stdout
    assert serial() == before_serial
    assert snapshot() == before_files
    assert query(f"rusak.{ZONE}", "A").rcode() == dns.rcode.NXDOMAIN
    assert_zone_answers(expected_records(settings, requests))


def test_a_record_that_would_add_lines_to_the_zone_is_refused(settings):
    before_files = snapshot()
    bad = [*settings.get("sop_zone_base_records"),
           {"name": "x", "type": "TXT", "value": '"ok"\nevil IN A 192.0.2.66'}]
    result = dns_playbook("-e", f'{{"sop_zone_base_records": {json.dumps(bad)}}}')
    assert result.returncode != 0
    assert "control character in its value" in result.stdout
    assert snapshot() == before_files
    assert query(f"evil.{ZONE}", "A").rcode() == dns.rcode.NXDOMAIN


# --- A secondary -------------------------------------------------------------

def _stop_secondary() -> None:
    """Stop the secondary named this module started, by its own pid, and remove its files."""
    pid_file = Path(f"/run/named/{SECONDARY_INSTANCE}.pid")
    rndc_conf = Path(f"/etc/bind/{SECONDARY_INSTANCE}/rndc.conf")
    pid = int(pid_file.read_text().strip()) if pid_file.exists() else None
    if rndc_conf.exists():
        run(["rndc", "-c", str(rndc_conf), "stop"])
    if pid:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            os.kill(pid, signal.SIGTERM)
    pid_file.unlink(missing_ok=True)
    for path in (f"/etc/bind/{SECONDARY_INSTANCE}", f"/var/cache/bind/{SECONDARY_INSTANCE}"):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def secondary(lab_apply, settings, tmp_path_factory):
    """The lab plus a secondary name server (a second named, set up by the role)."""
    inventory = tmp_path_factory.mktemp("secondary") / "secondary.yml"
    inventory.write_text(SECONDARY_INVENTORY)
    try:
        result = dns_playbook(inventories=[inventory])
        assert result.returncode == 0, result.stdout[-4000:]
        assert_no_secret(result.stdout + result.stderr, tsig_key(settings))
        yield inventory
    finally:
        _stop_secondary()
        restore = dns_playbook()
        assert restore.returncode == 0, restore.stdout[-3000:]
        assert "also-notify" not in Path("/etc/bind/named.conf.local").read_text()


def test_the_secondary_transfers_the_zone_with_the_key(secondary, settings, requests):
    primary_serial = serial()
    eventually(lambda: serial(SECONDARY_PORT) == primary_serial)
    assert_zone_answers(expected_records(settings, requests), port=SECONDARY_PORT)
    local = Path(f"/etc/bind/{SECONDARY_INSTANCE}/named.conf.local").read_text()
    assert "type secondary;" in local and f'key "{settings.get("sop_dns_tsig_key_name")}"' in local
    # The secondary passes the zone on to nobody, key or not.
    key = tsig_key(settings)
    keyring = dns.tsigkeyring.from_text({key["name"]: (key["algorithm"], key["secret"])})
    with pytest.raises(dns.xfr.TransferError):
        dns.zone.from_xfr(dns.query.xfr(DNS, ZONE, port=SECONDARY_PORT, keyring=keyring,
                                        keyname=key["name"], timeout=5))
    # Idempotence with a secondary in the inventory.
    again = dns_playbook(inventories=[secondary])
    assert again.returncode == 0 and not any(changed(again.stdout).values()), \
        changed(again.stdout)


def test_a_change_raises_the_serial_above_the_live_one_and_reaches_the_secondary(
        secondary, settings, requests, tmp_path):
    # The server answers a serial above the file's (a hand edit, a restored
    # backup) and beyond today's 99th change: the next one must still rise.
    original = ZONE_FILE.read_text()
    today = int(dt.datetime.now(dt.UTC).strftime("%Y%m%d")) * 100
    high = max(serial() + 5, today + 99)
    ZONE_FILE.write_text(re.sub(r"\d+ ; serial", f"{high} ; serial", original, count=1))
    assert run(["rndc", "reload", ZONE]).returncode == 0
    eventually(lambda: serial() == high)
    ZONE_FILE.write_text(original)  # the file says less than the server now

    web = f"web.{ZONE}."
    extra = requests_dir_with(tmp_path, "ujidns")
    args = ("-e", f"sop_requests_dir={extra}", "-e", f"sop_web_cname=web.{ZONE}")
    result = dns_playbook(*args, inventories=[secondary])
    assert result.returncode == 0, result.stdout[-4000:]
    new = serial()
    assert new == high + 1 and len(str(new)) == 10 and new < 2**32
    assert ask(f"ujidns.{ZONE}", "CNAME") == [web]
    assert ask(f"www.ujidns.{ZONE}", "CNAME") == [web]
    assert ask(f"ujidns.{ZONE}", "A") == ["127.0.0.1"]  # the server follows its own CNAME
    # dinkes receives mail on its own name: it keeps its address beside the MX.
    assert ask(f"dinkes.{ZONE}", "A") == ["127.0.0.1"] and ask(f"dinkes.{ZONE}", "CNAME") == []
    assert ask(f"www.dinkes.{ZONE}", "CNAME") == [web]
    # Notified, the secondary transfers the change.
    eventually(lambda: serial(SECONDARY_PORT) == new
               and ask(f"ujidns.{ZONE}", "CNAME", SECONDARY_PORT) == [web])

    same = dns_playbook(*args, inventories=[secondary])
    assert same.returncode == 0 and not any(changed(same.stdout).values()), changed(same.stdout)
    assert serial() == new

    # Back to the lab's own requests: the name goes, the serial rises again.
    restore = dns_playbook(inventories=[secondary])
    assert restore.returncode == 0, restore.stdout[-3000:]
    assert serial() == new + 1
    assert query(f"ujidns.{ZONE}", "A").rcode() == dns.rcode.NXDOMAIN
    assert_zone_answers(expected_records(settings, requests))
    eventually(lambda: serial(SECONDARY_PORT) == new + 1
               and query(f"ujidns.{ZONE}", "A", SECONDARY_PORT).rcode() == dns.rcode.NXDOMAIN)
