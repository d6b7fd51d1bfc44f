"""What agencies' mail does every day beyond delivery (issue 18), on the lab.

Mail programs configure themselves: Thunderbird's autoconfig, Outlook's
autodiscover and the RFC 6186 SRV records of every mail domain say what the
printout says. MTA-STS: the policy served over HTTPS at mta-sts.<domain> and
its id in DNS, which changes when, and only when, the policy does.

Spam filtering: rspamd as Postfix's milter refuses GTUBE at SMTP time, a
message it scores as spam is filed into Junk by Dovecot's global Sieve script,
ordinary mail arrives untouched, a holder's own (authenticated) mail is never
marked and its DKIM signature still verifies; the controller answers on
loopback only and only with the password kept on the host.
"""

from __future__ import annotations

import email
import email.policy
import http.client
import json
import os
import re
import smtplib
import socket
import ssl
import stat
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import dkim
import dns.message
import dns.query
import dns.rdatatype
import pytest

from .conftest import playbook, recap
from .mailclient import HOST, context, imaps, lab_dns_txt, message

# The standard GTUBE: rspamd refuses it whatever else the message says.
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
CONTROLLER = ("127.0.0.1", 11334)
PASSWORD_FILE = "/etc/rspamd/controller.password"
RSPAMD_FILES = ["/etc/rspamd/local.d/worker-proxy.inc", "/etc/rspamd/local.d/actions.conf",
                "/etc/rspamd/override.d/worker-controller.inc"]


def uid() -> str:
    return uuid.uuid4().hex[:12]


def mailboxes(requests):
    return [b for r in requests if r["mail"] for b in r["mail"]["mailboxes"]]


def password(register, address):
    return register.accounts[address]["password"]


def world_message(to: str, subject: str, body: str) -> EmailMessage:
    """A well-formed message from another domain's MTA (Date, Message-ID)."""
    msg = message("penguji@example.net", to, subject, body)
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain="example.net")
    return msg


def spam(sender: str, tag: str) -> EmailMessage:
    """What a spammer sends: shouted subject, no Date or Message-ID, hidden
    recipients, HTML with nothing but links (one to a bare IP address).
    rspamd's own rules score it between add_header (6) and reject (15)."""
    msg = EmailMessage()
    msg["From"] = f'"PEMENANG UNDIAN" <{sender}>'
    msg["To"] = "undisclosed-recipients:;"
    msg["Subject"] = f"SELAMAT ANDA MENANG HADIAH UANG TUNAI {tag.upper()}!!!"
    msg.set_content('<html><body><a href="http://192.0.2.7/klaim">KLIK DI SINI</a> '
                    '<a href="http://bit.ly/x">http://paypal.com</a></body></html>\n',
                    subtype="html")
    return msg


def send_from_world(msg: EmailMessage, to: str | None = None) -> None:
    with smtplib.SMTP(HOST, 25, timeout=30) as smtp:
        smtp.ehlo("penguji.example.net")
        smtp.starttls(context=context())
        smtp.ehlo("penguji.example.net")
        smtp.send_message(msg, to_addrs=[to] if to else None)


def folders_with(address: str, pw: str, subject: str,
                 timeout: float = 20) -> dict[str, list[bytes]]:
    """{folder: [raw message]} for every folder holding ``subject``, waiting
    until it is somewhere (or ``timeout`` passed)."""
    deadline = time.monotonic() + timeout
    while True:
        found: dict[str, list[bytes]] = {}
        with imaps(address, pw) as imap:
            for folder in ("INBOX", "Junk"):
                imap.select(folder, readonly=True)
                typ, data = imap.search(None, "SUBJECT", f'"{subject}"')
                for num in data[0].split() if typ == "OK" else []:
                    _, parts = imap.fetch(num, "(BODY.PEEK[])")
                    found.setdefault(folder, []).append(parts[0][1])
            imap.logout()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def controller(path: str, pw: str | None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(*CONTROLLER, timeout=10)
    try:
        conn.request("GET", path, headers={} if pw is None else {"Password": pw})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def history(subject: str, timeout: float = 20) -> dict:
    """rspamd's record of the scan of the message with this subject."""
    pw = open(PASSWORD_FILE).read().strip()
    deadline = time.monotonic() + timeout
    while True:
        _, body = controller("/history", pw)
        rows = [r for r in json.loads(body)["rows"] if r.get("subject") == subject]
        if rows or time.monotonic() > deadline:
            assert len(rows) == 1, f"rspamd scanned {len(rows)} message(s) titled {subject}"
            return rows[0]
        time.sleep(0.5)


@pytest.fixture(scope="module")
def box(requests, register):
    """A mailbox of the lab examples and its password."""
    address = mailboxes(requests)[0]["address"]
    return address, password(register, address)


# --- Spam filtering -------------------------------------------------------

def test_gtube_is_refused_at_smtp_time_and_never_delivered(lab_apply, box):
    address, pw = box
    subject = f"gtube-{uid()}"
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send_from_world(world_message(address, subject, f"Penawaran.\n\n{GTUBE}\n"))
    assert refused.value.smtp_code == 554, refused.value
    assert refused.value.smtp_error.startswith(b"5.7.1")
    assert folders_with(address, pw, subject, timeout=3) == {}


def test_message_scored_as_spam_is_filed_into_junk(lab_apply, box):
    address, pw = box
    msg = spam("hadiah@example.net", uid())
    send_from_world(msg, to=address)
    found = folders_with(address, pw, msg["Subject"])
    assert list(found) == ["Junk"], f"filed into {list(found)}"
    assert len(found["Junk"]) == 1
    assert email.message_from_bytes(found["Junk"][0])["X-Spam"] == "Yes"
    row = history(msg["Subject"])
    assert row["action"] == "add header" and 6 <= row["score"] < 15, row


def test_ordinary_mail_arrives_in_the_inbox_untouched(lab_apply, box):
    address, pw = box
    subject = f"biasa-{uid()}"
    body = "Undangan rapat koordinasi hari Senin pukul 09.00 WITA.\n"
    msg = world_message(address, subject, body)
    send_from_world(msg)
    found = folders_with(address, pw, subject)
    assert list(found) == ["INBOX"], f"filed into {list(found)}"
    got = email.message_from_bytes(found["INBOX"][0], policy=email.policy.default)
    assert got["X-Spam"] is None
    assert got["Message-ID"] == msg["Message-ID"]
    assert got.get_content().replace("\r\n", "\n") == body
    row = history(subject)
    assert row["action"] == "no action", "rspamd scanned it and let it be"


def test_holders_own_mail_is_not_marked_and_its_dkim_signature_verifies(requests, register):
    req = next(r for r in requests if r["mail"] and len(r["mail"]["mailboxes"]) > 1)
    sender, rcpt = (b["address"] for b in req["mail"]["mailboxes"][:2])
    # What the world's spam looks like (the hostile case): from a logged-in
    # holder it is scanned, scores as spam would, and is left alone.
    msg = spam(sender, uid())
    with smtplib.SMTP(HOST, 587, timeout=30) as smtp:
        smtp.ehlo("klien.example.net")
        smtp.starttls(context=context())
        smtp.ehlo("klien.example.net")
        smtp.login(sender, password(register, sender))
        smtp.send_message(msg, to_addrs=[rcpt])
    found = folders_with(rcpt, password(register, rcpt), msg["Subject"])
    assert list(found) == ["INBOX"], f"filed into {list(found)}"
    raw = found["INBOX"][0]
    assert email.message_from_bytes(raw)["X-Spam"] is None
    assert dkim.verify(raw, dnsfunc=lab_dns_txt), "OpenDKIM's signature still verifies"
    row = history(msg["Subject"])
    assert row["user"] == sender and row["action"] == "no action", row
    assert row["score"] >= 6, "scored as the world's spam is: only the action differs"


def test_rspamd_listens_on_loopback_only(lab_apply):
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    rspamd = [line.split()[3] for line in out.splitlines() if '"rspamd"' in line]
    assert sorted(rspamd) == ["127.0.0.1:11332", "127.0.0.1:11333", "127.0.0.1:11334"], rspamd


def test_controller_asks_every_client_for_the_password_kept_on_the_host(lab_apply):
    st = os.stat(PASSWORD_FILE)
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
    pw = open(PASSWORD_FILE).read().strip()
    assert len(pw) >= 24
    assert controller("/stat", None)[0] in (401, 403)
    assert controller("/stat", "q1")[0] in (401, 403), "Debian's default password refused"
    assert controller("/stat", pw + "x")[0] in (401, 403)
    status, body = controller("/stat", pw)
    assert status == 200 and b"scanned" in body
    # Only its hash is in rspamd's configuration, readable by rspamd alone.
    found = subprocess.run(["grep", "-rlF", pw, "/etc/rspamd", "--exclude=controller.password"],
                           capture_output=True, text=True)
    assert found.stdout == "", found.stdout
    inc = os.stat("/etc/rspamd/local.d/controller-password.inc")
    assert stat.S_IMODE(inc.st_mode) & 0o007 == 0


def test_a_broken_rspamd_setting_is_refused_before_it_goes_live(lab_apply):
    live = {f: open(f).read() for f in RSPAMD_FILES}
    # A reply text that ends the string and opens a section never closed.
    result = playbook("-e", json.dumps({"rspamd_reject_message": 'x";\nbogus = {'}))
    assert result.returncode != 0
    assert "failed to validate" in result.stdout, result.stdout[-3000:]
    assert "unmatched open brace" in result.stdout or "syntax BAD" in result.stdout
    assert {f: open(f).read() for f in RSPAMD_FILES} == live
    assert recap(result.stdout)["lab"]["failed"] == 1
    # rspamd still filters.
    out = subprocess.run(["rspamc", "-h", "127.0.0.1:11333"], input=f"Subject: t\n\n{GTUBE}\n",
                         capture_output=True, text=True, timeout=30)
    assert "Action: reject" in out.stdout, out.stdout + out.stderr


# --- Mail programs configure themselves -----------------------------------

WEB_CA = "/etc/nginx/sop-lab-ca/ca.crt"


def https(host: str, path: str, method: str = "GET", body: bytes | None = None,
          tls: bool = True) -> tuple[int, dict, bytes]:
    """A request to the lab's web server for ``host`` (SNI and certificate
    checked against the lab CA for that name)."""
    if tls:
        ctx = ssl.create_default_context(cafile=WEB_CA)
        conn = http.client.HTTPSConnection(host, 443, context=ctx, timeout=10)
        conn.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", 443), 10),
                                    server_hostname=host)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", 80, timeout=10)
    try:
        conn.request(method, path, body=body, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def printout_settings(settings, label: str) -> dict:
    """IMAP and SMTP host, port and security as the printout PDF states them."""
    pdf = settings.state_dir / "printouts" / f"{label}.pdf"
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                          text=True, check=True).stdout
    out = {}
    for kind in ("IMAP", "SMTP"):
        m = re.search(rf"\({kind}\)\s+(\S+)\s+(\d+)\s+(SSL/TLS|STARTTLS)", text)
        assert m, f"no {kind} line on the printout"
        out[kind] = {"host": m[1], "port": int(m[2]), "security": m[3]}
    return out


def srv(name: str) -> list[tuple[int, int, str]]:
    r = dns.query.udp(dns.message.make_query(name, "SRV"), "127.0.0.1", timeout=3)
    return sorted((rd.priority, rd.port, rd.target.to_text())
                  for rrset in r.answer if rrset.rdtype == dns.rdatatype.SRV for rd in rrset)


def dns_txt(name: str) -> list[str]:
    r = dns.query.udp(dns.message.make_query(name, "TXT"), "127.0.0.1", timeout=3)
    return sorted(b"".join(rd.strings).decode() for rrset in r.answer
                  if rrset.rdtype == dns.rdatatype.TXT for rd in rrset)


def mail_requests(requests):
    return [r for r in requests if r["mail"]]


def test_thunderbird_autoconfig_says_what_the_printout_says(requests, settings):
    for req in mail_requests(requests):
        domain = req["mail"]["address_domain"]
        paper = printout_settings(settings, req["subdomain"])
        # Thunderbird asks over HTTPS, then over plain HTTP: both answer.
        for tls in (True, False):
            status, headers, body = https(f"autoconfig.{domain}", "/mail/config-v1.1.xml",
                                          tls=tls)
            assert status == 200 and headers["content-type"].startswith("application/xml")
            provider = ET.fromstring(body).find("emailProvider")  # noqa: S314 (the lab)
            assert provider.get("id") == domain and provider.findtext("domain") == domain
            imap = provider.find("incomingServer[@type='imap']")
            smtp = provider.find("outgoingServer[@type='smtp']")
            for server, kind in ((imap, "IMAP"), (smtp, "SMTP")):
                assert server.findtext("hostname") == paper[kind]["host"]
                assert int(server.findtext("port")) == paper[kind]["port"]
                want = {"SSL/TLS": "SSL", "STARTTLS": "STARTTLS"}[paper[kind]["security"]]
                assert server.findtext("socketType") == want
                assert server.findtext("username") == "%EMAILADDRESS%"


def test_outlook_autodiscover_answers_a_post_with_the_printouts_settings(requests, settings):
    ns = {"a": "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"}
    for req in mail_requests(requests):
        domain = req["mail"]["address_domain"]
        address = req["mail"]["mailboxes"][0]["address"]
        paper = printout_settings(settings, req["subdomain"])
        ask = (f'<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="http://schemas.'
               f'microsoft.com/exchange/autodiscover/outlook/requestschema/2006"><Request>'
               f"<EMailAddress>{address}</EMailAddress><AcceptableResponseSchema>http://"
               f"schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
               f"</AcceptableResponseSchema></Request></Autodiscover>").encode()
        status, headers, body = https(f"autodiscover.{domain}", "/autodiscover/autodiscover.xml",
                                      method="POST", body=ask)
        assert status == 200 and headers["content-type"].startswith("application/xml")
        protocols = {p.findtext("a:Type", namespaces=ns): p
                     for p in ET.fromstring(body).iterfind(".//a:Protocol", ns)}  # noqa: S314
        assert set(protocols) == {"IMAP", "SMTP"}
        for kind, p in protocols.items():
            assert p.findtext("a:Server", namespaces=ns) == paper[kind]["host"]
            assert int(p.findtext("a:Port", namespaces=ns)) == paper[kind]["port"]
            want = {"SSL/TLS": "SSL", "STARTTLS": "TLS"}[paper[kind]["security"]]
            assert p.findtext("a:Encryption", namespaces=ns) == want
        # Outlook's capitals, too.
        assert https(f"autodiscover.{domain}", "/Autodiscover/Autodiscover.xml",
                     method="POST", body=ask)[0] == 200


def test_srv_records_name_the_printouts_servers(requests, settings):
    for req in mail_requests(requests):
        domain = req["mail"]["address_domain"]
        paper = printout_settings(settings, req["subdomain"])
        imap_name = "_imaps._tcp" if paper["IMAP"]["security"] == "SSL/TLS" else "_imap._tcp"
        host = paper["IMAP"]["host"] + "."
        assert srv(f"{imap_name}.{domain}") == [(0, paper["IMAP"]["port"], host)]
        other = "_imap._tcp" if imap_name == "_imaps._tcp" else "_imaps._tcp"
        assert [p for p, _, _ in srv(f"{other}.{domain}")] == [10], "the other way comes after"
        assert srv(f"_submission._tcp.{domain}") == [(0, paper["SMTP"]["port"],
                                                      paper["SMTP"]["host"] + ".")]


def test_names_that_are_not_a_mail_domains_get_nothing(requests):
    hosting_only = [r for r in requests if not r["mail"]]
    names = [f"autoconfig.{r['subdomain']}.sumbabaratdayakab.go.id" for r in hosting_only]
    names.append("autoconfig.tidakada.sumbabaratdayakab.go.id")
    for name in names:
        status, _, body = https(name, "/mail/config-v1.1.xml", tls=False)
        assert b"emailProvider" not in body, name
        assert srv(f"_submission._tcp.{name.split('.', 1)[1]}") == []


# --- MTA-STS and TLS-RPT --------------------------------------------------

def sts_policy(domain: str) -> dict:
    status, headers, body = https(f"mta-sts.{domain}", "/.well-known/mta-sts.txt")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    text = body.decode("ascii")
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", ""), "CRLF lines"
    return dict(line.split(": ", 1) for line in text.split("\r\n") if line)


def sts_id(domain: str) -> str:
    records = [t for t in dns_txt(f"_mta-sts.{domain}") if t.startswith("v=STSv1")]
    assert len(records) == 1, records
    fields = dict(f.strip().split("=", 1) for f in records[0].split(";") if f.strip())
    assert re.fullmatch(r"[A-Za-z0-9]{1,32}", fields["id"])
    return fields["id"]


def sts_state(domains) -> dict:
    return {d: (sts_id(d), sts_policy(d)) for d in domains}


def test_mta_sts_policy_and_tls_rpt_for_every_mail_domain(requests):
    domains = sorted({r["mail"]["address_domain"] for r in mail_requests(requests)})
    for domain in domains:
        policy = sts_policy(domain)
        assert policy == {"version": "STSv1", "mode": "testing",
                          "mx": "mail.sumbabaratdayakab.go.id", "max_age": "86400"}, policy
        assert dns_txt(f"_smtp._tls.{domain}") == [
            "v=TLSRPTv1; rua=mailto:dmarc@sumbabaratdayakab.go.id"]
        # The policy is for HTTPS only and nothing else is served there.
        assert https(f"mta-sts.{domain}", "/.well-known/mta-sts.txt", tls=False)[2].find(
            b"STSv1") < 0
        assert https(f"mta-sts.{domain}", "/")[0] == 404


def test_mta_sts_id_stays_across_runs_and_changes_with_the_mode(requests):
    domains = sorted({r["mail"]["address_domain"] for r in mail_requests(requests)})
    before = sts_state(domains)
    assert len({i for i, _ in before.values()}) == 1, "one policy, one id for every domain"
    again = playbook()
    assert again.returncode == 0, again.stdout[-3000:]
    assert sts_state(domains) == before, "same policy, same id"
    enforce = {"sop_mta_sts": {"mode": "enforce", "max_age": 86400,
                               "tls_rpt_rua": "dmarc@sumbabaratdayakab.go.id"}}
    try:
        changed = playbook("-e", json.dumps(enforce))
        assert changed.returncode == 0, changed.stdout[-3000:]
        after = sts_state(domains)
        for domain in domains:
            assert after[domain][1]["mode"] == "enforce"
            assert after[domain][0] != before[domain][0], "a new policy gets a new id"
    finally:
        back = playbook()
    assert back.returncode == 0, back.stdout[-3000:]
    assert sts_state(domains) == before, "the same policy again: the same id again"


# --- Brute-force protection -----------------------------------------------
# A network namespace plays a host on the network: its first address the
# attacker, its second the administrator (the lab inventory's
# sop_admin_addresses). The lab's daemons listen on loopback only: the test
# forwards the namespace's traffic for the host's end of the link to
# 127.0.0.1 (DNAT; route_localnet on that link), keeping the client address.

NS = "sopf2b"
HOST_IF = "sopf2b0"
HOST_IP = "10.231.77.1"
ATTACKER = "10.231.77.2"
ADMIN = "10.231.77.3"
NFT_TABLE = "sop_f2b_test"
JAILS = ("dovecot", "postfix-sasl", "sop-sshd", "sop-webmail")
MAIL_NAME = "mail.sumbabaratdayakab.go.id"

# Run inside the namespace: one IMAP or SMTP AUTH login from a source
# address (login and password on stdin); prints ok, refused (wrong
# password) or unreachable.
LOGIN = r"""
import smtplib, socket, ssl, sys
kind, src, host = sys.argv[1:4]
user, pw = sys.stdin.read().split("\n")[:2]  # never in the process list
ctx = ssl.create_default_context(cafile="/etc/sop-lab-ca/ca.crt")
ctx.check_hostname = False
try:
    if kind == "ssh":
        import paramiko
        sock = socket.create_connection((host, 22), 40, (src, 0))
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            client.connect(host, 22, user, pw, sock=sock, look_for_keys=False,
                           allow_agent=False, timeout=40, banner_timeout=40,
                           auth_timeout=40)
            client.open_sftp().listdir(".")
            print("ok")
        except paramiko.AuthenticationException:
            print("refused")
        except (paramiko.SSHException, EOFError):
            print("unreachable")
        finally:
            client.close()
    elif kind == "imap":
        raw = socket.create_connection((host, 993), 40, (src, 0))
        with ctx.wrap_socket(raw) as tls:
            f = tls.makefile("rwb")
            f.readline()
            f.write(b'a LOGIN "%s" "%s"\r\n' % (user.encode(), pw.encode()))
            f.flush()
            line = f.readline()
            while line and not line.startswith(b"a "):
                line = f.readline()
            print("ok" if line.startswith(b"a OK") else "refused" if line else "unreachable")
    elif kind == "webmail":
        import http.client, re, urllib.parse
        name = "webmail.sumbabaratdayakab.go.id"
        def request(method, path, body=None, cookie=""):
            raw = socket.create_connection((host, 443), 40, (src, 0))
            conn = http.client.HTTPSConnection(name, 443, timeout=40)
            conn.sock = ctx.wrap_socket(raw, server_hostname=name)
            conn.request(method, path, body=body, headers={
                "Host": name, "Cookie": cookie,
                "Content-Type": "application/x-www-form-urlencoded"})
            resp = conn.getresponse()
            return resp, resp.read().decode("utf-8", "replace")
        resp, page = request("GET", "/")
        cookie = "; ".join(v.split(";", 1)[0] for k, v in resp.getheaders()
                           if k.lower() == "set-cookie")
        token = re.search(r'name="_token" value="([^"]+)"', page)[1]
        form = urllib.parse.urlencode({"_token": token, "_task": "login", "_action": "login",
                                       "_user": user, "_pass": pw})
        resp, _ = request("POST", "/?_task=login", form, cookie)
        print({302: "ok", 401: "refused"}.get(resp.status, "unreachable"))
    else:
        with smtplib.SMTP(host, 587, timeout=40, source_address=(src, 0)) as smtp:
            smtp.ehlo("klien.example.net")
            smtp.starttls(context=ctx)
            smtp.ehlo("klien.example.net")
            try:
                smtp.login(user, pw)
                print("ok")
            except smtplib.SMTPAuthenticationError:
                print("refused")
except (OSError, smtplib.SMTPException):
    print("unreachable")
"""


def sh(*argv: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check, **kw)


@pytest.fixture(scope="module")
def namespace(lab_apply):
    """The namespace and the forwarding; all of it removed afterwards."""
    sh("ip", "netns", "del", NS, check=False)
    sh("ip", "link", "del", HOST_IF, check=False)
    try:
        sh("ip", "netns", "add", NS)
        sh("ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", "eth0", "netns", NS)
        sh("ip", "addr", "add", f"{HOST_IP}/29", "dev", HOST_IF)
        sh("ip", "link", "set", HOST_IF, "up")
        for addr in (ATTACKER, ADMIN):
            sh("ip", "-n", NS, "addr", "add", f"{addr}/29", "dev", "eth0")
        sh("ip", "-n", NS, "link", "set", "eth0", "up")
        sh("ip", "-n", NS, "link", "set", "lo", "up")
        sh("sysctl", "-q", "-w", f"net.ipv4.conf.{HOST_IF}.route_localnet=1")
        sh("nft", "-f", "-", input=(
            f"table ip {NFT_TABLE} {{\n chain pre {{\n  type nat hook prerouting priority dstnat;\n"
            f'  iifname "{HOST_IF}" ip daddr {HOST_IP} dnat to 127.0.0.1\n }}\n}}\n'))
        yield
    finally:
        sh("nft", "delete", "table", "ip", NFT_TABLE, check=False)
        sh("ip", "netns", "del", NS, check=False)
        sh("ip", "link", "del", HOST_IF, check=False)
        for jail in JAILS:
            sh("fail2ban-client", "set", jail, "unbanip", ATTACKER, ADMIN, check=False)


def login(kind: str, src: str, user: str, pw: str) -> str:
    out = sh("ip", "netns", "exec", NS, sys.executable, "-c", LOGIN, kind, src, HOST_IP,
             input=f"{user}\n{pw}\n", timeout=90)
    return out.stdout.strip()


def banned(jail: str) -> list[str]:
    out = sh("fail2ban-client", "status", jail).stdout
    return out.split("Banned IP list:", 1)[1].split()


def wait_for(predicate, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(1)
    return True


@pytest.fixture(scope="module")
def sftp_account(requests, register):
    from sop.model import hosting_account_id, hosting_username

    req = next(r for r in requests if r.get("hosting"))
    return (hosting_username(req["subdomain"]),
            register.accounts[hosting_account_id(req["subdomain"])]["password"])


# A failed SMTP AUTH in flight when the ban starts waits for the client's 40 s
# timeout: postfix-sasl's ban time in the test outlasts it.
BAN_SECONDS = {"dovecot": 30, "sop-sshd": 30, "postfix-sasl": 60}


@pytest.mark.parametrize(("jail", "kind"), [("dovecot", "imap"), ("sop-sshd", "ssh"),
                                            ("postfix-sasl", "smtp")])
def test_repeated_failed_logins_ban_the_address_for_the_ban_time_but_never_the_admin(
        namespace, box, sftp_account, jail, kind):
    address, pw = sftp_account if kind == "ssh" else box
    assert login(kind, ATTACKER, address, pw) == "ok", "the namespace reaches the daemon"
    maxretry = int(sh("fail2ban-client", "get", jail, "maxretry").stdout.split()[-1])
    old_bantime = sh("fail2ban-client", "get", jail, "bantime").stdout.split()[-1]
    # Short, for the test only.
    sh("fail2ban-client", "set", jail, "bantime", str(BAN_SECONDS[jail]))
    try:
        # The administrator fails as often, meanwhile: Dovecot delays each
        # failed login from an address longer than the last (up to 15 s).
        with ThreadPoolExecutor(1) as pool:
            admin = pool.submit(lambda: [login(kind, ADMIN, address, "salah-" + uid())
                                         for _ in range(maxretry + 1)])
            tries = [login(kind, ATTACKER, address, "salah-" + uid())
                     for _ in range(maxretry + 1)]
            assert tries[0] == "refused"
            assert wait_for(lambda: ATTACKER in banned(jail)), f"{ATTACKER} not banned by {jail}"
            # Refused on every port, with the right password too.
            for other in ("imap", "smtp", "ssh"):
                assert login(other, ATTACKER, address, pw) == "unreachable", other
            assert set(admin.result()) == {"refused"}, admin.result()
        assert ADMIN not in banned(jail) and "127.0.0.1" not in banned(jail)
        assert login(kind, ADMIN, address, pw) == "ok"
        # After the ban time the address is let in again.
        assert wait_for(lambda: ATTACKER not in banned(jail), 60)
        assert login(kind, ATTACKER, address, pw) == "ok"
    finally:
        sh("fail2ban-client", "set", jail, "bantime", old_bantime, check=False)
        sh("fail2ban-client", "set", jail, "unbanip", ATTACKER, check=False)


def test_repeated_failed_webmail_logins_ban_the_browsers_address_but_never_the_admin(
        namespace, box):
    jail = "sop-webmail"
    address, pw = box
    assert login("webmail", ATTACKER, address, pw) == "ok", "the namespace reaches the webmail"
    old = {key: sh("fail2ban-client", "get", jail, key).stdout.split()[-1]
           for key in ("maxretry", "bantime")}
    # Two failures and 30 s, for the test only: each refusal through the
    # webmail waits for Dovecot's delay, longer at every failure.
    sh("fail2ban-client", "set", jail, "maxretry", "2")
    sh("fail2ban-client", "set", jail, "bantime", "30")
    try:
        with ThreadPoolExecutor(1) as pool:
            admin = pool.submit(lambda: [login("webmail", ADMIN, address, "salah-" + uid())
                                         for _ in range(2)])
            tries = [login("webmail", ATTACKER, address, "salah-" + uid()) for _ in range(2)]
            assert tries == ["refused", "refused"]
            assert wait_for(lambda: ATTACKER in banned(jail)), f"{ATTACKER} not banned by {jail}"
            for other in ("webmail", "imap"):
                assert login(other, ATTACKER, address, pw) == "unreachable", other
            assert admin.result() == ["refused", "refused"]
        assert ADMIN not in banned(jail)
        # Not banned, the administrator still reaches the webmail at once;
        # Roundcube itself refuses this mailbox for a minute after three
        # failures, whoever asks (login_rate_limit), and then lets it in.
        assert login("webmail", ADMIN, address, pw) in ("ok", "refused")
        assert wait_for(lambda: login("webmail", ADMIN, address, pw) == "ok", 120)
        assert wait_for(lambda: ATTACKER not in banned(jail), 60)
        assert login("webmail", ATTACKER, address, pw) == "ok"
    finally:
        for key, value in old.items():
            sh("fail2ban-client", "set", jail, key, value, check=False)
        sh("fail2ban-client", "set", jail, "unbanip", ATTACKER, check=False)


def test_loopback_and_the_inventorys_admin_addresses_are_never_banned(lab_apply, settings):
    admins = settings.vars["sop_admin_addresses"]
    assert ADMIN in admins
    for jail in JAILS:
        ignored = sh("fail2ban-client", "get", jail, "ignoreip").stdout
        for addr in ["127.0.0.0/8", *admins]:
            assert addr in ignored, (jail, addr)


def test_a_killed_fail2ban_is_started_again_by_the_next_run(lab_apply):
    """kill -9 leaves the socket behind; Debian's init script refuses to start
    over it, so the run must clear it (and only when nobody answers on it)."""
    sh("pkill", "-KILL", "-f", "/usr/bin/fail2ban-server", check=False)
    assert wait_for(lambda: sh("fail2ban-client", "ping", check=False).returncode != 0, 10)
    assert os.path.exists("/run/fail2ban/fail2ban.sock"), "the killed server left its socket"
    result = playbook()
    assert result.returncode == 0, result.stdout[-3000:]
    assert sh("fail2ban-client", "ping").stdout.strip().endswith("pong")
    for jail in JAILS:
        assert sh("fail2ban-client", "status", jail).returncode == 0, jail
    # Running again: nothing to clear, nothing changed.
    again = playbook()
    assert recap(again.stdout)["lab"]["changed"] == 0, again.stdout[-3000:]
