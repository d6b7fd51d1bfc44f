"""Post-checks: the outcome as an agency would see it.

For each request: the name answers at the authoritative DNS server, the site
answers for its name, and every mailbox logs in over IMAP with the password
from the register. Results carry no password.
"""

from __future__ import annotations

import http.client
import imaplib
import ssl
from collections.abc import Iterable, Mapping

import dns.message
import dns.query
import dns.rdatatype

TIMEOUT = 5.0


def _dns(fqdn: str, rdtype: str, server: str, port: int = 53) -> list[str]:
    query = dns.message.make_query(fqdn, rdtype)
    response = dns.query.udp(query, server, port=port, timeout=TIMEOUT)
    wanted = dns.rdatatype.from_text(rdtype)
    return sorted(
        rd.to_text() for rrset in response.answer if rrset.rdtype == wanted for rd in rrset
    )


def check_dns(req: Mapping, cfg: Mapping) -> dict:
    rdtype = "A" if req.get("hosting") else "MX"
    fqdn = req["fqdn"] if req.get("hosting") or req["mail"]["domain"] == "subdomain" \
        else req["mail"]["address_domain"]
    try:
        answers = _dns(fqdn, rdtype, cfg["dns_server"], int(cfg.get("dns_port", 53)))
    except Exception as exc:  # network errors of every kind are a failed check
        return _result(req, "dns", fqdn, False, f"{rdtype}: {exc.__class__.__name__}")
    return _result(req, "dns", fqdn, bool(answers),
                   f"{rdtype} {', '.join(answers)}" if answers else f"no {rdtype} answer")


def check_http(req: Mapping, cfg: Mapping) -> dict:
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
        detail = f"HTTP {resp.status}" + (" ke HTTPS" if to_https else "")
    except Exception as exc:  # network errors of every kind are a failed check
        ok, detail = False, exc.__class__.__name__
    finally:
        conn.close()
    return _result(req, "http", req["fqdn"], ok, detail)


def check_imap(req: Mapping, address: str, password: str, cfg: Mapping) -> dict:
    try:
        with imaplib.IMAP4(cfg["imap_host"], int(cfg.get("imap_port", 143)),
                           timeout=TIMEOUT) as imap:
            if "STARTTLS" in imap.capabilities:
                imap.starttls(ssl_context=_lab_tls_context(cfg))
            imap.login(address, password)
            imap.logout()
        return _result(req, "imap", address, True, "login OK")
    except Exception as exc:  # login refusal and network errors alike
        return _result(req, "imap", address, False, exc.__class__.__name__)


def _lab_tls_context(cfg: Mapping) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=cfg.get("ca_file") or None)
    if not cfg.get("ca_file"):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _result(req: Mapping, check: str, target: str, ok: bool, detail: str) -> dict:
    return {"subdomain": req["subdomain"], "check": check, "target": target, "ok": ok,
            "detail": detail}


def run_postchecks(requests: Iterable[Mapping], credentials: Mapping[str, Mapping],
                   cfg: Mapping) -> list[dict]:
    """Every check for every request; ``credentials`` maps address to entry."""
    results = []
    for req in requests:
        results.append(check_dns(req, cfg))
        if req.get("hosting"):
            results.append(check_http(req, cfg))
        for box in (req.get("mail") or {}).get("mailboxes", []):
            entry = credentials.get(box["address"])
            if entry is None:
                results.append(_result(req, "imap", box["address"], False, "not in register"))
                continue
            results.append(check_imap(req, box["address"], entry["password"], cfg))
    return results
