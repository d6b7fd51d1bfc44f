"""The production rehearsal: `inventory/production` as the regency will run it.

Four servers (ns1, ns2, mail, web) in containers, this machine as the
controller of record, pebble as the ACME CA, and the regency's repository on
a bare git "forge" (tests/multihost/rehearsal.py says what is replaced and
why). A pull request is checked by the steps of `.github/workflows/requests.yml`
without any secret; once merged, the step of `.github/workflows/apply.yml`
applies it on the controller; the administrator prints a sheet and its
password logs in. Then: the certificates and who may change the challenge
records, a second apply that changes nothing, renewal, a second controller
refused during an apply, and an apply killed after step 5 whose next run
changes no password. The tests run in file order, each on what the one
before left.
"""

from __future__ import annotations

import base64
import hashlib
import imaplib
import json
import os
import re
import smtplib
import socket
import ssl
import subprocess
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsigkeyring
import dns.update
import pytest

from . import rehearsal as R
from .conftest import DAEMONS, HOSTS, ZONE, address, image
from .containers import CONTROLLER, Network

ACME_KEY = "sop-acme"
MAIL_NAME = f"mail.{ZONE}"
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def production():
    """Servers up, pebble up, the controller's state folders, the forge, and
    the servers prepared for the controller (playbooks/prepare-servers.yml)."""
    base = image()
    network = Network(base=base, hosts=HOSTS, domain=ZONE, daemons=DAEMONS)
    pebble = R.Pebble(dns_server=address("ns1"))
    try:
        network.create()
        network.boot()
        R.PRODUCTION.mkdir(mode=0o700, parents=True)
        (R.PRODUCTION / "home").mkdir(mode=0o700)
        pebble.start()
        # The servers trust the CA's listener and its root, as servers trust
        # Let's Encrypt's (the webmail on web1 checks the mail host's
        # certificate against the system's CAs when it logs in to IMAP).
        for name in ("mail1", "web1"):
            host = network.containers[name]
            anchors = host.root / "usr/local/share/ca-certificates"
            (anchors / "rehearsal-acme.crt").write_bytes(pebble.listener_ca.read_bytes())
            (anchors / "rehearsal-acme-root.crt").write_bytes(R.PEBBLE_ROOT.read_bytes())
            host.ssh("update-ca-certificates >/dev/null")
        # The controller's state: /var/lib/sop (with the `sop` user's SSH key) and /etc/sop.
        (R.CONTROLLER_STATE / ".ssh").mkdir(mode=0o700, parents=True)
        (R.CONTROLLER_STATE / ".ssh" / "id_ed25519.pub").write_bytes(
            (R.STATE / "id_ed25519.pub").read_bytes())
        R.CONTROLLER_ETC.mkdir(mode=0o700)
        vault_password = base64.b64encode(os.urandom(24)).decode()
        password_file = R.CONTROLLER_ETC / "vault-password"
        password_file.write_text(vault_password + "\n")
        password_file.chmod(0o600)
        acme_secret = base64.b64encode(os.urandom(32)).decode()
        addresses = {"192.0.2.10": address("ns1"), "192.0.2.11": address("ns2"),
                     "192.0.2.25": address("mail1"), "192.0.2.80": address("web1"),
                     "192.0.2.5": CONTROLLER}
        R.make_forge(addresses, acme_secret, vault_password)
        admin = R.checkout("admin")
        prepared = subprocess.run(
            [str(R.VENV_BIN / "ansible-playbook"), "-i", "inventory/production",
             "playbooks/prepare-servers.yml", "-e", "ansible_user=root"],
            cwd=admin, env=R.controller_env(SOP_VAULT_PASSWORD_FILE=str(password_file)),
            capture_output=True, text=True, timeout=600)
        assert prepared.returncode == 0, prepared.stdout + prepared.stderr
        yield {"network": network, "acme_secret": acme_secret, "admin": admin}
    finally:
        # What the closing note quotes (git-ignored): the time from an apply's
        # start to the printout, the issuer the post-checks saw, what a second
        # controller was told.
        (R.REPO / "bench-results").mkdir(exist_ok=True)
        (R.REPO / "bench-results" / "rehearsal.json").write_text(json.dumps(TIMINGS, indent=1))
        pebble.stop()
        if os.environ.get("SOP_MULTIHOST_KEEP") != "1":
            network.destroy()


def venv_env(**extra) -> dict:
    env = R.controller_env(**extra)
    env["PATH"] = f"{R.VENV_BIN}:{env['PATH']}"
    return env


def apply_workflow(name: str = "runner") -> tuple[subprocess.CompletedProcess, Path, float]:
    """apply.yml's step in a fresh checkout of main, as the controller's runner runs it."""
    (step,) = R.workflow_steps("apply.yml")
    work = R.checkout(name)
    R.SUMMARY.write_text("")
    started = time.time()
    result = R.run_step(step, work, R.controller_env(CHECK_ONLY="false"))
    return result, work, started


def sheet_password(pdf: Path, address_: str) -> str:
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                          text=True, check=True).stdout
    match = re.search(rf"{re.escape(address_)}\s+(\S+)", text)
    assert match, f"{address_} not on {pdf.name}"
    return match.group(1)


def pebble_context(server_name: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(R.PEBBLE_ROOT))
    ctx.check_hostname = True
    return ctx


def imap_login(address_: str, password: str) -> dict:
    """STARTTLS on 143 of the mail host, the certificate verified for mail.<zone>
    against pebble's root only; the peer certificate after the login."""
    from sop.postcheck import tls_context

    ctx = tls_context(str(R.PEBBLE_ROOT), MAIL_NAME)
    with imaplib.IMAP4(address("mail1"), 143, timeout=10) as imap:
        imap.starttls(ssl_context=ctx)
        imap.login(address_, password)
        cert = imap.sock.getpeercert()
        imap.logout()
    return cert


def eventually(check, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def issuer_cn(cert: dict) -> str:
    return dict(item for rdn in cert["issuer"] for item in rdn).get("commonName", "")


def served_cert(host: str, port: int, server_name: str) -> dict:
    from sop.postcheck import tls_context

    ctx = tls_context(str(R.PEBBLE_ROOT), server_name)
    with socket.create_connection((host, port), timeout=10) as raw, \
            ctx.wrap_socket(raw) as tls:
        return tls.getpeercert()


# --- SOP step 1: the pull request ---------------------------------------------------

def test_the_pull_request_check_validates_and_plans_without_any_secret(production):
    requests = {p.name: p.read_text() for p in sorted((R.REPO / "lab" / "requests").glob("*.yml"))}
    R.push_requests("request/lab-examples", requests, "Permohonan: four agencies")
    work = R.PRODUCTION / "pr-check"
    R.sh("rm", "-rf", work)
    R.sh("git", "clone", "-q", "--branch", "request/lab-examples", R.FORGE, work)
    # A hosted runner: no key, no vault password anywhere it could look.
    assert not Path("/etc/sop/vault-password").exists()
    env = {k: v for k, v in venv_env().items() if not k.startswith("ANSIBLE_")}
    env.update(BASE_REF="main", ALLOW_LARGE_CHANGE="false")
    R.SUMMARY.write_text("")
    ran = []
    for step in R.workflow_steps("requests.yml"):
        if step["name"].startswith("Install"):
            continue  # the venv is this suite's own
        result = R.run_step(step, work, env)
        assert result.returncode == 0, f"{step['name']}:\n{result.stdout}\n{result.stderr}"
        ran.append(step["name"])
    assert len(ran) >= 3, ran
    summary = R.SUMMARY.read_text()
    for label in ("dinkes", "pasola", "bappeda", "dukcapil"):
        assert label in summary, summary
    # The inventory really holds an encrypted secret the check never needed.
    assert (work / "inventory/production/group_vars/all/vault.yml").read_text().startswith(
        "$ANSIBLE_VAULT")


# --- SOP steps 2-8: merged, applied on the controller -------------------------------

def test_the_merge_is_applied_on_the_controller_by_the_apply_workflow(production):
    R.merge("request/lab-examples")
    result, work, started = apply_workflow()
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    record = R.latest_record()
    assert record["status"] == "ok", record.get("failure")
    assert {r["subdomain"] for r in record["requests"]} == {"dinkes", "pasola", "bappeda",
                                                            "dukcapil"}
    assert record["postchecks"] and all(c["ok"] for c in record["postchecks"]), \
        [c for c in record["postchecks"] if not c["ok"]]
    https = [c for c in record["postchecks"] if c["check"] == "http"]
    assert https and all("HTTPS 200, sertifikat dari Pebble" in c["detail"] for c in https), https
    logins = [c for c in record["postchecks"] if c["check"] == "imap"]
    assert logins and all("sertifikat dari Pebble" in c["detail"] for c in logins), logins
    # The report reached the job summary; the printouts stayed on the controller.
    assert record["run_id"] in R.SUMMARY.read_text() or "dinkes" in R.SUMMARY.read_text()
    sheet = R.CONTROLLER_STATE / "printouts" / "dinkes.pdf"
    assert sheet.exists() and sheet.stat().st_mode & 0o077 == 0
    TIMINGS["apply_to_printout_s"] = sheet.stat().st_mtime - started
    TIMINGS["issuer"] = https[0]["detail"]
    # Nothing was pushed: the forge's main is what was merged.
    log = R.sh("git", "-C", R.FORGE, "log", "--oneline", "main").stdout
    assert "Register" not in log


def test_the_administrator_prints_a_sheet_whose_password_logs_in(production):
    admin = R.checkout("admin-print")
    result = subprocess.run([str(R.VENV_BIN / "sop"), "-i", "inventory/production", "print",
                             "dinkes"], cwd=admin, env=venv_env(), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    pdf = Path(result.stdout.strip().splitlines()[-1])
    assert pdf.parent == R.CONTROLLER_STATE / "printouts"
    address_ = f"admin@dinkes.{ZONE}"
    password = sheet_password(pdf, address_)
    cert = imap_login(address_, password)
    assert issuer_cn(cert).startswith("Pebble"), cert["issuer"]
    with pytest.raises(imaplib.IMAP4.error):
        imap_login(address_, password + "x")


# --- Certificates -------------------------------------------------------------------

def test_every_certificate_comes_from_the_acme_server_and_caa_names_the_ca(production):
    for server in ("ns1", "ns2"):
        q = dns.message.make_query(ZONE, "CAA")
        answer = dns.query.udp(q, address(server), timeout=5)
        caa = sorted(rd.to_text() for rrset in answer.answer for rd in rrset)
        assert '0 issue "letsencrypt.org"' in caa and '0 issuewild "letsencrypt.org"' in caa, caa
    for name in (f"dinkes.{ZONE}", f"www.dinkes.{ZONE}", f"bappeda.{ZONE}"):
        cert = served_cert(address("web1"), 443, name)
        assert issuer_cn(cert).startswith("Pebble")
        assert ("DNS", name) in cert["subjectAltName"]
    # A name without a site of its own gets the zone's wildcard.
    wildcard = served_cert(address("web1"), 443, f"tidak-ada.{ZONE}")
    assert ("DNS", f"*.{ZONE}") in wildcard["subjectAltName"]
    # Mail programs and sending servers (MTA-STS) check these names: an
    # agency's own mail domain has a certificate of its own naming all three,
    # the zone's names are the wildcard's.
    for domain in (f"dinkes.{ZONE}", f"dukcapil.{ZONE}"):
        for label in ("autoconfig", "autodiscover", "mta-sts"):
            cert = served_cert(address("web1"), 443, f"{label}.{domain}")
            assert issuer_cn(cert).startswith("Pebble")
            assert ("DNS", f"{label}.{domain}") in cert["subjectAltName"]
    zone_sts = served_cert(address("web1"), 443, f"mta-sts.{ZONE}")
    assert ("DNS", f"*.{ZONE}") in zone_sts["subjectAltName"]
    from sop.postcheck import tls_context

    with smtplib.SMTP(address("mail1"), 587, timeout=10) as smtp:
        smtp.starttls(context=tls_context(str(R.PEBBLE_ROOT), MAIL_NAME))
        cert = smtp.sock.getpeercert()
    assert ("DNS", MAIL_NAME) in cert["subjectAltName"] and issuer_cn(cert).startswith("Pebble")


def _update(production, name: str, rdtype: str, value: str, zone: str) -> int:
    keyring = dns.tsigkeyring.from_text({ACME_KEY: production["acme_secret"]})
    update = dns.update.UpdateMessage(zone, keyring=keyring, keyname=ACME_KEY,
                                      keyalgorithm="hmac-sha256")
    update.add(name, 60, rdtype, value)
    return dns.query.tcp(update, address("ns1"), timeout=10).rcode()


def test_the_acme_key_changes_challenge_txt_records_and_nothing_else(production):
    challenge = f"_acme-challenge.{ZONE}."
    assert _update(production, challenge, "TXT", '"rehearsal"', challenge) == dns.rcode.NOERROR
    q = dns.message.make_query(challenge, "TXT")
    answer = dns.query.udp(q, address("ns1"), timeout=5)
    assert any("rehearsal" in rd.to_text() for rrset in answer.answer for rd in rrset)
    # Anything else is refused: another type at that name, the main zone, DKIM.
    assert _update(production, challenge, "A", "192.0.2.66", challenge) == dns.rcode.REFUSED
    assert _update(production, f"dinkes.{ZONE}.", "A", "192.0.2.66", ZONE) \
        in (dns.rcode.REFUSED, dns.rcode.NOTAUTH)
    assert _update(production, f"mail._domainkey.dinkes.{ZONE}.", "TXT", '"v=DKIM1; p=x"',
                   ZONE) in (dns.rcode.REFUSED, dns.rcode.NOTAUTH)
    # The secondary answers with the delegation to the primary.
    answer = dns.query.udp(dns.message.make_query(challenge, "TXT"), address("ns2"), timeout=5)
    assert any(rrset.rdtype == dns.rdatatype.NS for rrset in answer.authority), answer


def delv(anchor: Path, server: str, name: str, rdtype: str) -> subprocess.CompletedProcess:
    return subprocess.run(["delv", "-a", str(anchor), f"+root={ZONE}", f"@{address(server)}",
                           name, rdtype], capture_output=True, text=True, check=False)


def mail_tlsa(port: int, server: str = "ns1") -> set[str]:
    answer = dns.query.udp(dns.message.make_query(f"_{port}._tcp.{MAIL_NAME}", "TLSA"),
                           address(server), timeout=5)
    return {rd.to_text() for rrset in answer.answer if rrset.rdtype == dns.rdatatype.TLSA
            for rd in rrset}


def mail_spki() -> str:
    """SHA-256 of the SubjectPublicKeyInfo the mail host presents on 25, 465 and 587 (one key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    ctx = ssl.create_default_context(cafile=str(R.PEBBLE_ROOT))
    ctx.check_hostname = False
    ders = []
    with smtplib.SMTP_SSL(address("mail1"), 465, timeout=10, context=ctx) as smtp:
        ders.append(smtp.sock.getpeercert(binary_form=True))
    for port in (25, 587):
        with smtplib.SMTP(address("mail1"), port, timeout=10) as smtp:
            smtp.starttls(context=ctx)
            ders.append(smtp.sock.getpeercert(binary_form=True))
    digests = {hashlib.sha256(x509.load_der_x509_certificate(der).public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).hexdigest() for der in ders}
    assert len(digests) == 1, digests
    return digests.pop()


def test_the_signed_zone_validates_at_both_name_servers_and_the_acme_zone_stays_unsigned(
        production, tmp_path):
    answer = dns.query.udp(dns.message.make_query(ZONE, "DNSKEY"), address("ns1"), timeout=5)
    ksk = [rd for rrset in answer.answer if rrset.rdtype == dns.rdatatype.DNSKEY
           for rd in rrset if rd.flags == 257]
    assert ksk, answer
    anchor = tmp_path / "anchor.conf"
    anchor.write_text("trust-anchors {\n" + "".join(
        f'\t"{ZONE}." static-key {rd.flags} {rd.protocol} {rd.algorithm} '
        f'"{base64.b64encode(rd.key).decode()}";\n' for rd in ksk) + "};\n")
    for server in ("ns1", "ns2"):  # the secondary serves the signed copy it transferred
        result = delv(anchor, server, f"dinkes.{ZONE}", "A")
        assert result.stdout.startswith("; fully validated"), (server, result.stdout, result.stderr)
    # DANE: the mail host's TLSA records, signed, at both name servers ...
    for server in ("ns1", "ns2"):
        result = delv(anchor, server, f"_25._tcp.{MAIL_NAME}", "TLSA")
        assert result.stdout.startswith("; fully validated"), (server, result.stdout, result.stderr)
    # ... naming the key of the CA's certificate (issued after the DNS step,
    # it replaced the stand-in's key: the run published the new key's hash).
    served = mail_spki()
    for port in (25, 465, 587):
        assert mail_tlsa(port) == {f"3 1 1 {served}"}, (port, mail_tlsa(port), served)
    # The ACME challenge zone is delegated without DS: provably unsigned, not bogus.
    result = delv(anchor, "ns1", f"_acme-challenge.{ZONE}", "TXT")
    assert result.stdout.startswith("; unsigned answer"), result.stdout + result.stderr
    assert "rehearsal" in result.stdout


def test_a_second_apply_changes_nothing(production):
    result, _, _ = apply_workflow()
    assert result.returncode == 0, result.stdout[-4000:]
    record = R.latest_record()
    assert record["status"] == "ok"
    assert sum(record["changed"].values()) == 0, (record["changed"], result.stdout[-4000:])


def test_renewal_installs_the_new_certificates_and_reloads_the_daemons(production):
    network = production["network"]
    before_mail = served_cert(address("mail1"), 993, MAIL_NAME)["serialNumber"]
    spki = mail_spki()
    # The mail certificate's renewals keep its key (DANE); the web's need not.
    conf = network.containers["mail1"].ssh("cat /etc/letsencrypt/renewal/mail-host.conf").stdout
    assert re.search(r"^reuse_key = True$", conf, re.MULTILINE), conf
    before_web = served_cert(address("web1"), 443, f"tidak-ada.{ZONE}")["serialNumber"]
    for host, lineage in (("mail1", "mail-host"), ("web1", "web-wildcard")):
        network.containers[host].ssh(
            f"certbot renew --force-renewal --no-random-sleep-on-renew --cert-name {lineage}",
            timeout=300)
    # A reload lets the old workers finish first: new connections soon see the new one.
    assert eventually(lambda: served_cert(address("mail1"), 993, MAIL_NAME)["serialNumber"]
                      != before_mail)
    assert eventually(lambda: served_cert(address("web1"), 443, f"tidak-ada.{ZONE}")
                      ["serialNumber"] != before_web)
    with smtplib.SMTP(address("mail1"), 587, timeout=10) as smtp:
        from sop.postcheck import tls_context

        smtp.starttls(context=tls_context(str(R.PEBBLE_ROOT), MAIL_NAME))
        assert smtp.sock.getpeercert()["serialNumber"] != before_mail
    # A new certificate, the same key: the published TLSA records still match.
    assert mail_spki() == spki
    for port in (25, 465, 587):
        assert mail_tlsa(port) == {f"3 1 1 {spki}"}


def test_a_mail_lineage_issued_before_reuse_key_is_given_it_and_then_keeps_its_key(production):
    """A mail host whose certificate was issued before this setting (no reuse_key in its
    renewal configuration): the next apply adds it, and a renewal then keeps the key."""
    mail1 = production["network"].containers["mail1"]
    conf = "/etc/letsencrypt/renewal/mail-host.conf"
    mail1.ssh(f"sed -i '/^reuse_key/d' {conf}")
    assert "reuse_key" not in mail1.ssh(f"cat {conf}").stdout
    spki = mail_spki()
    result, _, _ = apply_workflow()
    assert result.returncode == 0, result.stdout[-4000:]
    assert R.latest_record()["status"] == "ok"
    assert re.search(r"^reuse_key = True$", mail1.ssh(f"cat {conf}").stdout, re.MULTILINE)
    def installed() -> tuple[str, str]:
        """The installed key's SPKI hash and the installed chain's hash."""
        out = mail1.ssh("openssl pkey -in /etc/ssl/sop/mail.key -pubout -outform DER | sha256sum;"
                        " sha256sum < /etc/ssl/sop/mail.fullchain.pem").stdout.split()
        return out[0], out[2]

    key, chain = installed()
    assert key == spki
    mail1.ssh("certbot renew --force-renewal --no-random-sleep-on-renew --cert-name mail-host",
              timeout=300)
    assert installed()[1] != chain and installed()[0] == spki
    assert mail_tlsa(25) == {f"3 1 1 {spki}"}


# --- One controller, one apply at a time --------------------------------------------

def test_a_second_controller_is_refused_while_an_apply_runs(production):
    (step,) = R.workflow_steps("apply.yml")
    first = R.checkout("runner-first")
    lock = R.CONTROLLER_STATE / "apply.lock"
    running = R.start_step(step, first, R.controller_env(CHECK_ONLY="false"))
    try:
        # `sop apply` names the requests once it holds the lock.
        seen = []
        while not any(line.startswith("Permohonan:") for line in seen):
            line = running.stdout.readline()
            assert line, "the first apply ended before it took the lock:\n" + "".join(seen)
            seen.append(line)
        assert "process" in lock.read_text()
        second = R.checkout("second-controller")
        other_state = R.PRODUCTION / "other-state"
        result = subprocess.run(
            [str(R.VENV_BIN / "sop"), "-i", "inventory/production", "apply"], cwd=second,
            env=venv_env(SOP_STATE_DIR=str(other_state)), capture_output=True, text=True,
            timeout=120)
        assert running.poll() is None, "the first apply ended before the second tried"
        assert result.returncode == 2, result.stdout + result.stderr
        assert "another sop apply is running" in result.stderr
        assert str(first) in result.stderr, result.stderr
        TIMINGS["second_controller_told"] = result.stderr.strip()
    finally:
        out, _ = running.communicate(timeout=900)
    assert running.returncode == 0, out[-4000:]


def test_an_apply_killed_after_step_5_hands_out_the_same_passwords_next_time(production):
    from sop.register import Register, vault_password

    new = (R.REPO / "lab" / "requests" / "dinkes.yml").read_text() \
        .replace("subdomain: dinkes", "subdomain: dinsos") \
        .replace("Dinas Kesehatan", "Dinas Sosial").replace("DINKES", "DINSOS")
    R.push_requests("main", {"dinsos.yml": new}, "Permohonan: Dinas Sosial")
    register_file = R.CONTROLLER_STATE / "register.vault.yml"
    password = vault_password(R.CONTROLLER_ETC / "vault-password")
    before = register_file.stat().st_mtime_ns
    (step,) = R.workflow_steps("apply.yml")
    work = R.checkout("runner-killed")
    running = R.start_step(step, work, R.controller_env(CHECK_ONLY="false"))
    deadline = time.monotonic() + 300
    while register_file.stat().st_mtime_ns == before:  # step 5 writes the register
        assert running.poll() is None, running.stdout.read()
        assert time.monotonic() < deadline, "step 5 never wrote the register"
        time.sleep(0.05)
    R.kill_tree(running.pid)
    running.wait(timeout=30)
    kept = {a: e["password"] for a, e in Register(register_file, password).accounts.items()}
    assert f"admin@dinsos.{ZONE}" in kept
    result, _, _ = apply_workflow("runner-after-kill")
    assert result.returncode == 0, result.stdout[-6000:]
    after = {a: e["password"] for a, e in Register(register_file, password).accounts.items()}
    assert after == kept
    record = R.latest_record()
    assert record["status"] == "ok" and all(c["ok"] for c in record["postchecks"])
    sheet = R.CONTROLLER_STATE / "printouts" / "dinsos.pdf"
    address_ = f"admin@dinsos.{ZONE}"
    assert sheet_password(sheet, address_) == kept[address_]
    imap_login(address_, kept[address_])


# --- The one production value this kernel cannot honour ------------------------------

def test_quota_enforcement_without_usrquota_stops_the_run_naming_the_file_system(production):
    """Production enforces hosting quotas (`sftp_hosting_quota: enforce`); the
    rehearsal's web file system has no user quotas (no kernel support here), so
    the rest of this module runs with `measure` (rehearsal.DEVIATIONS). With the
    production value the run must stop on the web host and say why."""
    work = R.checkout("enforce")
    daemons = work / "inventory/production/group_vars/all/daemons.yml"
    original = (R.REPO / "inventory/production/group_vars/all/daemons.yml").read_text()
    assert "sftp_hosting_quota: enforce" in original
    text = daemons.read_text()
    daemons.write_text(re.sub(r"(?m)^sftp_hosting_quota: .*$", "sftp_hosting_quota: enforce",
                              text))
    result = subprocess.run([str(R.VENV_BIN / "sop"), "-i", "inventory/production", "apply"],
                            cwd=work, env=venv_env(), capture_output=True, text=True,
                            timeout=900)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "quota enforcement asked for" in output and "usrquota" in output, output[-3000:]
    assert "web.sumbabaratdayakab.go.id" in output
    # The next run with the rehearsal's setting converges again.
    again, _, _ = apply_workflow("runner-after-enforce")
    assert again.returncode == 0, again.stdout[-3000:]
