"""Post-checks: the outcome as an agency would see it.

For each request: the name answers at the authoritative DNS server, the site
answers for its name, and every mailbox logs in over IMAP, through TLS with a
verified certificate, with the password from the register. For a suspended
request (``status: suspended``, issue 9) the opposite is checked: the site
answers 503 (the suspended page) and the login is refused. With a webmail
(``webmail_host``), its page answers over HTTPS with a verified certificate,
the mailboxes of new or reset accounts log in through it (and out), and a
suspended agency's are refused there too. Results carry no password.
"""

from __future__ import annotations

import http.client
import imaplib
import ipaddress
import re
import ssl
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from urllib.parse import urlencode

import dns.message
import dns.query
import dns.rdatatype

TIMEOUT = 5.0
# A refused webmail login waits for Dovecot's delay after a failed password,
# longer at each failure from the same address (the web server's), up to 15 s.
WEBMAIL_LOGIN_TIMEOUT = 30.0
# The same for an IMAP login after refused ones (see ``run_postchecks``).
REFUSAL_TIMEOUT = 30.0
# Checks in flight at once (threads: they wait on sockets).
WORKERS = 8


def _dns(fqdn: str, rdtype: str, server: str, port: int = 53) -> list[str]:
    query = dns.message.make_query(fqdn, rdtype)
    response = dns.query.udp(query, server, port=port, timeout=TIMEOUT)
    wanted = dns.rdatatype.from_text(rdtype)
    return sorted(
        rd.to_text() for rrset in response.answer if rrset.rdtype == wanted for rd in rrset
    )


def _is_address(text: object) -> bool:
    try:
        ipaddress.ip_address(str(text))
    except ValueError:
        return False
    return True


def expected_dns(rdtype: str, cfg: Mapping) -> str | None:
    """What the name must answer: the web server's IPv4 address (``web_ipv4``,
    else ``web_address`` when it is an address) for A; the mail host's name
    (``mail_hostname``, else ``imap_server_name``, else ``imap_host`` when it
    is a name) for the MX exchange. None when the settings do not say."""
    if rdtype == "A":
        want = cfg.get("web_ipv4") or cfg.get("web_address")
        return str(want) if want and _is_address(want) else None
    for key in ("mail_hostname", "imap_server_name", "imap_host"):
        host = cfg.get(key)
        if host and not _is_address(host):
            return str(host).rstrip(".").lower() + "."
    return None


def check_dns(req: Mapping, cfg: Mapping) -> dict:
    """The name answers, and with what it must: the web server (A) or the mail
    host (MX exchange). Another answer, or none, is a failed check."""
    rdtype = "A" if req.get("hosting") else "MX"
    fqdn = req["fqdn"] if req.get("hosting") or req["mail"]["domain"] == "subdomain" \
        else req["mail"]["address_domain"]
    try:
        answers = _dns(fqdn, rdtype, cfg["dns_server"], int(cfg.get("dns_port", 53)))
    except Exception as exc:  # network errors of every kind are a failed check
        return _result(req, "dns", fqdn, False, f"{rdtype}: {exc.__class__.__name__}")
    if not answers:
        return _result(req, "dns", fqdn, False, f"no {rdtype} answer")
    detail = f"{rdtype} {', '.join(answers)}"
    want = expected_dns(rdtype, cfg)
    if want is None:
        return _result(req, "dns", fqdn, True, detail)
    got = answers if rdtype == "A" else [a.split()[-1].lower() for a in answers]
    ok = set(got) == {want}
    return _result(req, "dns", fqdn, ok, detail if ok else f"{detail} (diharapkan {want})")


def check_http(req: Mapping, cfg: Mapping, suspended: bool = False) -> dict:
    conn = http.client.HTTPConnection(cfg["web_address"], int(cfg.get("web_port", 80)),
                                      timeout=TIMEOUT)
    try:
        conn.request("GET", "/", headers={"Host": req["fqdn"]})
        resp = conn.getresponse()
        resp.read()
        # A site with a certificate may send HTTP visitors to HTTPS (nginx_https_redirect).
        to_https = resp.status in (301, 308) and \
            resp.getheader("Location") == f"https://{req['fqdn']}/"
        ok = resp.status == 200 or to_https
        if suspended:  # the suspended page, over HTTP or after the redirect
            ok = resp.status == 503 or to_https
        detail = f"HTTP {resp.status}" + (" ke HTTPS" if to_https else "")
        if to_https and cfg.get("web_https_port"):
            ok, https_detail = _check_https(req["fqdn"], cfg, suspended)
            detail += f"; {https_detail}"
        if suspended:
            detail += " (ditangguhkan)"
    except Exception as exc:  # network errors of every kind are a failed check
        ok, detail = False, exc.__class__.__name__
    finally:
        conn.close()
    return _result(req, "http", req["fqdn"], ok, detail)


def _check_https(fqdn: str, cfg: Mapping, suspended: bool) -> tuple[bool, str]:
    """The page over HTTPS at ``web_address``, its certificate verified for
    the site's name (``ca_file`` or the system's CAs); the detail names the
    certificate's issuer."""
    ctx = tls_context(cfg.get("ca_file"), fqdn)
    conn = http.client.HTTPSConnection(cfg["web_address"], int(cfg["web_https_port"]),
                                       timeout=TIMEOUT, context=ctx)
    try:
        conn.request("GET", "/", headers={"Host": fqdn})
        resp = conn.getresponse()
        resp.read()
        issuer = _issuer(conn.sock)
    except ssl.SSLCertVerificationError as exc:
        return False, f"HTTPS: sertifikat ditolak ({exc.verify_message})"
    finally:
        conn.close()
    ok = resp.status == (503 if suspended else 200)
    return ok, f"HTTPS {resp.status}, sertifikat dari {issuer}"


def _issuer(sock) -> str:
    """The issuer's common name (or organisation) of a verified peer."""
    cert = sock.getpeercert() if sock is not None else None
    fields = dict(item for rdn in (cert or {}).get("issuer", ()) for item in rdn)
    return fields.get("commonName") or fields.get("organizationName") or "?"


def check_imap(req: Mapping, address: str, password: str, cfg: Mapping,
               suspended: bool = False, timeout: float | None = None) -> dict:
    """Log in over TLS only: implicit TLS (``imap_security: tls``, port 993)
    or STARTTLS (143, the default). A server that offers no STARTTLS fails the
    check rather than receiving the password in clear. The certificate is
    verified (``ca_file`` or the system CAs) for ``imap_server_name``
    (default: ``imap_host``)."""
    host = cfg["imap_host"]
    implicit = str(cfg.get("imap_security", "starttls")).lower() in ("tls", "ssl", "ssl/tls")
    port = int(cfg.get("imap_port", 993 if implicit else 143))
    ctx = tls_context(cfg.get("ca_file"), cfg.get("imap_server_name") or host)
    timeout = timeout or (REFUSAL_TIMEOUT if suspended else TIMEOUT)
    try:
        if implicit:
            imap = imaplib.IMAP4_SSL(host, port, ssl_context=ctx, timeout=timeout)
        else:
            imap = imaplib.IMAP4(host, port, timeout=timeout)
        with imap:
            if not implicit:
                if "STARTTLS" not in imap.capabilities:
                    return _result(req, "imap", address, False, "STARTTLS not offered")
                imap.starttls(ssl_context=ctx)
            try:
                imap.login(address, password)
            except imaplib.IMAP4.error:
                if suspended:  # refused as it must be: the server answered NO
                    return _result(req, "imap", address, True, "login ditolak (ditangguhkan)")
                raise
            issuer = _issuer(imap.sock)
            imap.logout()
        if suspended:
            return _result(req, "imap", address, False, "login diterima, padahal ditangguhkan")
        return _result(req, "imap", address, True, f"login OK (TLS, sertifikat dari {issuer})")
    except Exception as exc:  # login refusal, TLS and network errors alike
        return _result(req, "imap", address, False, exc.__class__.__name__)


class NamedTLSContext(ssl.SSLContext):
    """A client context that verifies the server's certificate for one name,
    whatever address the connection goes to (the lab connects to 127.0.0.1,
    the certificate is for mail.<zone>)."""

    server_name: str

    def wrap_socket(self, sock, *args, server_hostname=None, **kwargs):
        return super().wrap_socket(sock, *args, server_hostname=self.server_name, **kwargs)


def tls_context(ca_file: str | None, server_name: str) -> NamedTLSContext:
    """Verifying context (TLS 1.2 or later): the lab's CA when ``ca_file`` is
    given, else the system's CAs."""
    ctx = NamedTLSContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file:
        ctx.load_verify_locations(cafile=ca_file)
    else:
        ctx.load_default_certs()
    ctx.server_name = server_name
    return ctx


def _result(req: Mapping, check: str, target: str, ok: bool, detail: str) -> dict:
    return {"subdomain": req["subdomain"], "check": check, "target": target, "ok": ok,
            "detail": detail}


def run_postchecks(requests: Iterable[Mapping], credentials: Mapping[str, Mapping],
                   cfg: Mapping, changed: Iterable[str] | None = None,
                   workers: int = WORKERS) -> list[dict]:
    """The checks of every request; ``credentials`` maps address to entry.

    DNS and the site of every request are checked. Mailboxes log in over IMAP
    all of them while there are at most ``imap_all_below`` (default 50), or
    ``imap_all`` is set; past that (each login costs the server a password
    hash), those of the requests in ``changed`` (new accounts, new passwords)
    plus ``imap_sample`` (default 5) of the others, spread over the list, so a
    configuration that broke every login still shows.

    Suspended agencies must be refused. Every refused password raises
    Dovecot's penalty for the address it came from, and that penalty (up to
    15 s) delays every later login from it, good ones too. So the refusals
    are tried last, for one mailbox of at most ``refusal_sample`` (default
    3) suspended agencies spread over the list (every suspended mailbox with
    ``imap_all``), and given the time the penalty takes; then one login that
    works (IMAP, and the webmail's when it refused one) clears the penalty
    of the checking addresses, so that neither the next run nor the staff
    behind the webmail wait for it.

    The checks wait on the network and on the servers: they run side by side,
    results in request order.
    """
    requests = list(requests)
    boxes = [(req, box) for req in requests
             for box in (req.get("mail") or {}).get("mailboxes", [])]
    chosen = _imap_chosen(boxes, cfg, None if changed is None else set(changed))
    refused = _refusals_chosen(boxes, cfg)
    checks: list[Callable[[], dict]] = []
    refusals: set[int] = set()  # indexes in checks: tried after the others
    for req in requests:
        suspended = req.get("status") == "suspended"
        checks.append(partial(check_dns, req, cfg))
        if req.get("hosting"):
            checks.append(partial(check_http, req, cfg, suspended))
        for box in (req.get("mail") or {}).get("mailboxes", []):
            if box["address"] not in (refused if suspended else chosen):
                continue
            entry = credentials.get(box["address"])
            if entry is None:
                checks.append(partial(_result, req, "imap", box["address"], False,
                                      "not in register"))
                continue
            if suspended:
                refusals.add(len(checks))
            checks.append(partial(check_imap, req, box["address"], entry["password"], cfg,
                                  suspended))
    webmail, webmail_refusals = _webmail_checks(boxes, chosen, refused, credentials, cfg,
                                                changed)
    refusals.update(len(checks) + n for n in webmail_refusals)
    checks += webmail
    results: dict[int, dict] = {}
    for phase in ([n for n in range(len(checks)) if n not in refusals], sorted(refusals)):
        results.update(zip(phase, _run([checks[n] for n in phase], workers), strict=True))
    if refusals:
        _run(_penalty_clearing(boxes, chosen, credentials, cfg, bool(webmail_refusals)),
             workers)
    return [results[n] for n in range(len(checks))]


def _run(checks: list[Callable[[], dict]], workers: int) -> list[dict]:
    if len(checks) < 2 or workers < 2:
        return [check() for check in checks]
    with ThreadPoolExecutor(max_workers=min(workers, len(checks))) as pool:
        return list(pool.map(lambda check: check(), checks))


def _penalty_clearing(boxes: list[tuple[Mapping, Mapping]], chosen: set[str],
                      credentials: Mapping[str, Mapping], cfg: Mapping,
                      webmail: bool) -> list[Callable[[], dict]]:
    """One good login (IMAP, and the webmail's when it refused one): Dovecot
    drops an address's penalty at its next good login. Not reported."""
    for req, box in boxes:
        entry = credentials.get(box["address"])
        if req.get("status") == "suspended" or box["address"] not in chosen or entry is None:
            continue
        logins = [partial(check_imap, req, box["address"], entry["password"], cfg,
                          False, REFUSAL_TIMEOUT)]
        if webmail and cfg.get("webmail_host"):
            logins.append(partial(check_webmail, req, cfg, box["address"], entry["password"]))
        return logins
    return []


def _webmail_checks(boxes: list[tuple[Mapping, Mapping]], chosen: set[str], refused: set[str],
                    credentials: Mapping[str, Mapping], cfg: Mapping,
                    changed: Iterable[str] | None
                    ) -> tuple[list[Callable[[], dict]], list[int]]:
    """Webmail logins: of the chosen mailboxes of new or reset accounts (all the
    chosen ones without ``changed``), ``webmail_sample`` (default 5) spread
    over the list (every one with ``imap_all``): each is a whole Roundcube
    session, and IMAP has logged every one of them in already; and the
    refusals' mailboxes (refused); the page alone when there is none of them.
    Also the indexes of the refusals among them."""
    host = cfg.get("webmail_host")
    if not host:
        return [], []
    changed = None if changed is None else set(changed)
    logins = [(req, box) for req, box in boxes
              if req.get("status") != "suspended" and box["address"] in chosen
              and box["address"] in credentials
              and (changed is None or req["subdomain"] in changed)]
    sample = len(logins) if cfg.get("imap_all") else int(cfg.get("webmail_sample", 5))
    sampled = {box["address"] for _, box in _spread(logins, sample)}
    checks: list[Callable[[], dict]] = []
    refusals: list[int] = []
    for req, box in boxes:
        suspended = req.get("status") == "suspended"
        entry = credentials.get(box["address"])
        if box["address"] not in (refused if suspended else sampled) or entry is None:
            continue
        if suspended:
            refusals.append(len(checks))
        checks.append(partial(check_webmail, req, cfg, box["address"], entry["password"],
                              suspended))
    if not checks:
        checks.append(partial(check_webmail, {"subdomain": "-"}, cfg))
    return checks, refusals


def check_webmail(req: Mapping, cfg: Mapping, address: str | None = None,
                  password: str | None = None, suspended: bool = False) -> dict:
    """The webmail's login page over HTTPS at ``web_address`` (certificate
    verified for ``webmail_host``); with an address, a login through the page
    as a browser makes it (session cookie, request token), then the logout.
    For a suspended agency the login must be refused."""
    host = cfg["webmail_host"]
    session = _WebSession(host, cfg)
    target = address or host
    try:
        status, body = session.request("GET", "/")
        token = re.search(r'name="_token" value="([^"]+)"', body)
        if status != 200 or not token or 'name="_user"' not in body:
            return _result(req, "webmail", target, False, f"HTTPS {status}, tanpa halaman login")
        detail = f"HTTPS {status}, sertifikat dari {session.issuer}"
        if address is None:
            return _result(req, "webmail", target, True, detail)
        status, _ = session.request("POST", "/?_task=login", {
            "_token": token[1], "_task": "login", "_action": "login", "_timezone": "Asia/Makassar",
            "_url": "", "_user": address, "_pass": password or ""}, WEBMAIL_LOGIN_TIMEOUT)
        logged_in = status in (301, 302) and "_task=mail" in session.location
        if suspended:
            ok = not logged_in
            return _result(req, "webmail", target, ok,
                           "login ditolak (ditangguhkan)" if ok else
                           "login diterima, padahal ditangguhkan")
        if not logged_in:
            return _result(req, "webmail", target, False, f"login ditolak (HTTP {status})")
        status, body = session.request("GET", "/?_task=mail")
        token = re.search(r'"request_token":"([^"]+)"', body)
        if token:
            session.request("GET", f"/?_task=logout&_token={token[1]}")
        return _result(req, "webmail", target, True, f"login OK; {detail}")
    except ssl.SSLCertVerificationError as exc:
        return _result(req, "webmail", target, False,
                       f"HTTPS: sertifikat ditolak ({exc.verify_message})")
    except Exception as exc:  # network errors of every kind are a failed check
        return _result(req, "webmail", target, False, exc.__class__.__name__)


class _WebSession:
    """Requests to one HTTPS name at ``web_address`` keeping the cookies."""

    def __init__(self, host: str, cfg: Mapping):
        self.host, self.cfg = host, cfg
        self.cookies: dict[str, str] = {}
        self.location = ""
        self.issuer = "?"

    def request(self, method: str, path: str, form: Mapping | None = None,
                timeout: float = TIMEOUT) -> tuple[int, str]:
        ctx = tls_context(self.cfg.get("ca_file"), self.host)
        conn = http.client.HTTPSConnection(self.cfg["web_address"],
                                           int(self.cfg.get("web_https_port", 443)),
                                           timeout=timeout, context=ctx)
        headers = {"Host": self.host}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            text = resp.read().decode("utf-8", "replace")
            self.issuer = _issuer(conn.sock)
        finally:
            conn.close()
        for name, value in resp.getheaders():
            if name.lower() == "set-cookie":
                key, _, rest = value.partition("=")
                val = rest.split(";", 1)[0]
                if val in ("", "-del-", "deleted"):
                    self.cookies.pop(key.strip(), None)
                else:
                    self.cookies[key.strip()] = val
        self.location = resp.getheader("Location") or ""
        return resp.status, text


def _imap_chosen(boxes: list[tuple[Mapping, Mapping]], cfg: Mapping,
                 changed: set[str] | None) -> set[str]:
    """Addresses whose IMAP login is checked (see ``run_postchecks``)."""
    every = {box["address"] for _, box in boxes}
    if changed is None or cfg.get("imap_all") or len(boxes) <= int(cfg.get("imap_all_below", 50)):
        return every
    chosen = {box["address"] for req, box in boxes if req["subdomain"] in changed}
    others = [box["address"] for req, box in boxes if req["subdomain"] not in changed]
    chosen.update(_spread(others, int(cfg.get("imap_sample", 5))))
    return chosen


def _refusals_chosen(boxes: list[tuple[Mapping, Mapping]], cfg: Mapping) -> set[str]:
    """Suspended mailboxes whose refusal is tried (see ``run_postchecks``)."""
    suspended = [box["address"] for req, box in boxes if req.get("status") == "suspended"]
    if cfg.get("imap_all"):
        return set(suspended)
    firsts: dict[str, str] = {}
    for req, box in boxes:
        if req.get("status") == "suspended":
            firsts.setdefault(req["subdomain"], box["address"])
    return set(_spread(list(firsts.values()), int(cfg.get("refusal_sample", 3))))


def _spread(items: list, n: int) -> list:
    """``n`` of the items spread evenly over the list (all of them when they
    are at most ``n``; none when ``n`` is 0)."""
    n = max(0, min(n, len(items)))
    return [items[len(items) * i // n] for i in range(n)]
