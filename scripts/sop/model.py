"""Desired state: what the servers must hold, derived from validated requests.

Every function here is pure: it takes normalized requests (the output of
``sop.validate.validate_paths``) and settings, and returns plain data for the
daemon-shaped roles (``bind_zone_records``, ``postfix_*``, ``dovecot_users``,
``nginx_vhosts``, ``sftp_hosting_accounts``, ``php_fpm_pools``). Only this module
and the playbook know what a request is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

HOSTING_PREFIX = "w-"
# Linux user names are at most 32 characters (useradd).
_MAX_USERNAME = 32


def hosting_username(label: str) -> str:
    """The hosting (SFTP) account name of a subdomain label.

    The prefix keeps agency accounts apart from system accounts (a label may
    well be ``daemon`` or ``backup``). Long labels are shortened with a hash
    suffix so two long labels never collide.
    """
    name = HOSTING_PREFIX + label
    if len(name) <= _MAX_USERNAME:
        return name
    digest = hashlib.sha256(label.encode()).hexdigest()[:8]
    keep = _MAX_USERNAME - len(HOSTING_PREFIX) - len(digest) - 1
    return f"{HOSTING_PREFIX}{label[:keep].rstrip('-')}-{digest}"


def hosting_account_id(label: str) -> str:
    """Key of a hosting account in the credential register."""
    return f"hosting:{label}"


def database_name(label: str) -> str:
    """The MariaDB database and user name of a site: its hosting account name
    with ``_`` for ``-`` (no quoting needed in SQL or in a CMS's settings; a
    label holds no ``_``, so two labels never share a name)."""
    return hosting_username(label).replace("-", "_")


def database_account_id(label: str) -> str:
    """Key of a site's database user in the credential register."""
    return f"database:{label}"


def wants_database(req: Mapping) -> bool:
    """Whether a request asks for a database (``hosting.database``, default false)."""
    return bool((req.get("hosting") or {}).get("database", False))


def agency_key(req: Mapping) -> str:
    """Who holds a request's accounts: the agency's official name, as compared
    (case and spacing aside) when an archived account is asked for again."""
    return " ".join(str((req.get("agency") or {}).get("name", "")).split()).casefold()


def accounts(requests: Iterable[Mapping]) -> list[dict]:
    """Every account that needs a password, in a stable order."""
    out: list[dict] = []
    for req in requests:
        agency = agency_key(req)
        if req.get("hosting"):
            out.append(
                {
                    "id": hosting_account_id(req["subdomain"]),
                    "username": hosting_username(req["subdomain"]),
                    "kind": "hosting",
                    "subdomain": req["subdomain"],
                    "agency": agency,
                }
            )
        if wants_database(req):
            out.append(
                {
                    "id": database_account_id(req["subdomain"]),
                    "username": database_name(req["subdomain"]),
                    "kind": "database",
                    "subdomain": req["subdomain"],
                    "agency": agency,
                }
            )
        for box in (req.get("mail") or {}).get("mailboxes", []):
            out.append(
                {
                    "id": box["address"],
                    "username": box["address"],
                    "kind": "mailbox",
                    "subdomain": req["subdomain"],
                    "agency": agency,
                }
            )
    return out


def mail_domains(requests: Iterable[Mapping]) -> list[str]:
    """Mail domains served, sorted and without repeats (the parent domain once)."""
    return sorted({req["mail"]["address_domain"] for req in requests if req.get("mail")})


def suspended(req: Mapping) -> bool:
    """Whether a request is served suspended (``status``, set by the lifecycle)."""
    return req.get("status") == "suspended"


def mail_data(requests: Iterable[Mapping], hashes: Mapping[str, str]) -> dict:
    """Plain data for the Postfix and Dovecot roles.

    ``hashes`` maps a mailbox address to its crypt hash (from the register).
    A suspended request's mailboxes keep their data and hash but refuse
    logins (``login: false``); its addresses (mailboxes and aliases) are
    listed in ``suspended`` for an inventory that refuses their mail.
    """
    requests = list(requests)
    mailboxes = []
    aliases = []
    stopped = []
    for req in requests:
        mail = req.get("mail")
        if not mail:
            continue
        for box in mail["mailboxes"]:
            mailboxes.append(
                {
                    "address": box["address"],
                    "hash": hashes[box["address"]],
                    "quota_bytes": box["quota_bytes"],
                    "login": not suspended(req),
                }
            )
        for alias in mail.get("aliases", []):
            aliases.append({"address": alias["address"], "to": list(alias["to"])})
        if suspended(req):
            stopped += [box["address"] for box in mail["mailboxes"]]
            stopped += [alias["address"] for alias in mail.get("aliases", [])]
    return {
        "domains": mail_domains(requests),
        "mailboxes": sorted(mailboxes, key=lambda m: m["address"]),
        "aliases": sorted(aliases, key=lambda a: a["address"]),
        "suspended": sorted(stopped),
    }


def zone_records(requests: Iterable[Mapping], settings: Mapping) -> list[dict]:
    """DNS records the requests need, relative to the zone.

    ``settings``: ``zone``, ``web_ipv4``, optional ``web_ipv6``, ``mail_hostname``
    (FQDN of the MX target), optional ``web_cname`` (FQDN of the web server):
    when set, sites' names are CNAMEs to it instead of A/AAAA records, except
    a label that also receives mail (a CNAME cannot sit next to its MX).
    """
    zone = settings["zone"]
    mx_target = settings["mail_hostname"].rstrip(".") + "."
    cname = (settings.get("web_cname") or "").rstrip(".")
    records: list[dict] = []
    parent_mail = False
    for req in requests:
        label = req["subdomain"]
        mail = req.get("mail")
        own_mail = bool(mail) and mail["address_domain"] != zone
        if req.get("hosting"):
            for name in (label, f"www.{label}"):
                if cname and not (own_mail and name == label):
                    records.append({"name": name, "type": "CNAME", "value": f"{cname}."})
                    continue
                records.append({"name": name, "type": "A", "value": settings["web_ipv4"]})
                if settings.get("web_ipv6"):
                    records.append({"name": name, "type": "AAAA", "value": settings["web_ipv6"]})
        if mail and mail["address_domain"] == zone:
            parent_mail = True
        elif mail:
            records.append({"name": label, "type": "MX", "value": f"10 {mx_target}"})
    if parent_mail:
        records.append({"name": "@", "type": "MX", "value": f"10 {mx_target}"})
    return records


def txt_rdata(text: str) -> str:
    """TXT record data in zone-file syntax: quoted strings of at most 255 bytes.

    Long texts (DKIM keys) are cut into several strings, which DNS clients
    join again; quotes and backslashes are escaped.
    """
    data = text.encode("ascii")
    chunks = [data[i:i + 255] for i in range(0, len(data), 255)] or [b""]
    out = []
    for chunk in chunks:
        escaped = chunk.decode("ascii").replace("\\", "\\\\").replace('"', '\\"')
        out.append(f'"{escaped}"')
    return " ".join(out)


def _relative(name: str, zone: str) -> str:
    """A name inside the zone, relative to it ("@" for the apex)."""
    name = name.rstrip(".")
    if name == zone:
        return "@"
    if not name.endswith("." + zone):
        raise ValueError(f"{name} is not inside the zone {zone}")
    return name[: -len(zone) - 1]


def mail_auth_records(requests: Iterable[Mapping], settings: Mapping,
                      dkim_keys: Iterable[Mapping] = ()) -> list[dict]:
    """SPF, DMARC and DKIM TXT records of every mail domain, relative to the zone.

    ``settings``: ``zone``; optional ``spf`` (default ``v=spf1 mx -all``),
    ``dmarc_policy`` (default ``quarantine``), ``dmarc_rua`` (an address that
    receives aggregate reports; omitted when empty) and ``require_dkim``
    (default true: a mail domain without a key in ``dkim_keys`` is an error).
    ``dkim_keys``: ``{domain, name, txt}`` of each key (the opendkim role's
    ``opendkim_public_keys``), ``name`` the full DNS name of the key.
    """
    zone = settings["zone"]
    spf = settings.get("spf") or "v=spf1 mx -all"
    dmarc = f"v=DMARC1; p={settings.get('dmarc_policy') or 'quarantine'}"
    if settings.get("dmarc_rua"):
        rua = str(settings["dmarc_rua"])
        dmarc += f"; rua={rua if rua.startswith('mailto:') else 'mailto:' + rua}"
    keys = {k["domain"]: k for k in dkim_keys}
    domains = mail_domains(requests)
    missing = [d for d in domains if d not in keys]
    if missing and settings.get("require_dkim", True):
        raise ValueError("no DKIM key known for " + ", ".join(missing)
                         + " (the mail play makes the keys: run it before the DNS play)")
    records: list[dict] = []
    for domain in domains:
        name = _relative(domain, zone)
        records.append({"name": name, "type": "TXT", "value": txt_rdata(spf)})
        dmarc_name = "_dmarc" if name == "@" else f"_dmarc.{name}"
        records.append({"name": dmarc_name, "type": "TXT", "value": txt_rdata(dmarc)})
        if domain in keys:
            records.append({"name": _relative(keys[domain]["name"], zone), "type": "TXT",
                            "value": txt_rdata(keys[domain]["txt"])})
    return records


# Issue 18: mail programs configure themselves (Thunderbird autoconfig,
# Outlook autodiscover, RFC 6186 SRV) and MTA-STS / TLS-RPT (RFC 8461, 8460).
MAIL_CLIENT_LABELS = ("autoconfig", "autodiscover", "mta-sts")
MTA_STS_MODES = ("none", "testing", "enforce")


def mta_sts_policy(settings: Mapping) -> dict:
    """The MTA-STS policy of every mail domain (they share the MX) and its id.

    ``settings``: ``mail_hostname`` and ``mta_sts`` (``mode``: none, testing
    or enforce; optional ``max_age`` in seconds, default one week). The id is
    derived from the policy text: it changes when, and only when, the policy
    does, with no state kept between runs.
    """
    sts = settings.get("mta_sts") or {}
    mode = sts.get("mode", "testing")
    if mode not in MTA_STS_MODES:
        raise ValueError(f"MTA-STS mode {mode!r}: one of {', '.join(MTA_STS_MODES)}")
    max_age = int(sts.get("max_age", 604800))
    text = (f"version: STSv1\r\nmode: {mode}\r\n"
            f"mx: {settings['mail_hostname'].rstrip('.')}\r\nmax_age: {max_age}\r\n")
    return {"text": text, "id": hashlib.sha256(text.encode()).hexdigest()[:20]}


def mail_client_names(requests: Iterable[Mapping]) -> list[str]:
    """The web names each mail domain needs (autoconfig, autodiscover, mta-sts)."""
    return [f"{label}.{d}" for d in mail_domains(requests) for label in MAIL_CLIENT_LABELS]


def mail_client_records(requests: Iterable[Mapping], settings: Mapping) -> list[dict]:
    """DNS records of every mail domain for mail programs and sending servers.

    ``settings``: ``zone``, ``web_ipv4``, optional ``web_cname``,
    ``mail_hostname``, ``mail_client`` (the printout's settings: ``imap_port``,
    ``imap_security`` SSL/TLS or STARTTLS, ``smtp_port``), ``mta_sts`` (see
    mta_sts_policy; ``tls_rpt_rua``: where TLS reports go).

    autoconfig, autodiscover and mta-sts names point at the web server; SRV
    records (RFC 6186) name the mail host, the printout's IMAP choice first
    (priority 0) and the other form of IMAP after it; ``_mta-sts`` carries
    the policy id and ``_smtp._tls`` the TLS-RPT address.
    """
    zone = settings["zone"]
    mail = settings["mail_hostname"].rstrip(".") + "."
    cname = (settings.get("web_cname") or "").rstrip(".")
    client = settings.get("mail_client") or {}
    implicit = str(client.get("imap_security", "SSL/TLS")).upper() in ("SSL/TLS", "SSL", "TLS")
    imap_port = int(client.get("imap_port", 993 if implicit else 143))
    imaps = f"{0 if implicit else 10} 1 {imap_port if implicit else 993} {mail}"
    imap = f"{10 if implicit else 0} 1 {143 if implicit else imap_port} {mail}"
    submission = f"0 1 {int(client.get('smtp_port', 587))} {mail}"
    sts = settings.get("mta_sts") or {}
    policy = mta_sts_policy(settings)
    rua = str(sts.get("tls_rpt_rua") or f"postmaster@{zone}")
    rua = rua if rua.startswith(("mailto:", "https:")) else "mailto:" + rua
    records: list[dict] = []
    for domain in mail_domains(requests):
        name = _relative(domain, zone)

        def at(prefix: str, name: str = name) -> str:
            return prefix if name == "@" else f"{prefix}.{name}"

        for label in MAIL_CLIENT_LABELS:
            if cname:
                records.append({"name": at(label), "type": "CNAME", "value": f"{cname}."})
            else:
                records.append({"name": at(label), "type": "A", "value": settings["web_ipv4"]})
        records.append({"name": at("_submission._tcp"), "type": "SRV", "value": submission})
        records.append({"name": at("_imap._tcp"), "type": "SRV", "value": imap})
        records.append({"name": at("_imaps._tcp"), "type": "SRV", "value": imaps})
        # Mode none too: that is how a domain withdraws its policy (RFC 8461 8.3).
        records.append({"name": at("_mta-sts"), "type": "TXT",
                        "value": txt_rdata(f"v=STSv1; id={policy['id']}")})
        records.append({"name": at("_smtp._tls"), "type": "TXT",
                        "value": txt_rdata(f"v=TLSRPTv1; rua={rua}")})
    return records


def wants_php(req: Mapping, settings: Mapping) -> bool:
    """Whether a site runs PHP: the request's ``hosting.php``, else ``php_default``;
    a site with a database runs PHP unless it says ``php: false`` (refused by
    the validator)."""
    hosting = req.get("hosting") or {}
    choice = hosting.get("php")
    if choice is None and wants_database(req):
        return True
    return bool(settings.get("php_default", False) if choice is None else choice)


def vhosts(requests: Iterable[Mapping], settings: Mapping) -> list[dict]:
    """nginx sites for requests with hosting: names, document root, page text.

    ``settings``: ``web_root``; optional ``php_default`` (PHP for requests
    that do not say) and ``php_socket_dir`` (where each PHP site's pool listens).
    """
    root = settings["web_root"].rstrip("/")
    socket_dir = settings.get("php_socket_dir", "/run/php").rstrip("/")
    out = []
    for req in requests:
        if not req.get("hosting"):
            continue
        label = req["subdomain"]
        php = wants_php(req, settings)
        out.append(
            {
                "name": label,
                "server_names": [req["fqdn"], f"www.{req['fqdn']}"],
                "home": f"{root}/{label}",
                "root": f"{root}/{label}/public",
                "owner": hosting_username(label),
                "title": req["agency"]["name"],
                "abbreviation": req["agency"]["abbreviation"],
                "php": php,
                "php_socket": f"{socket_dir}/sop-{label}.sock" if php else None,
                "suspended": suspended(req),
            }
        )
    return out


def php_pools(requests: Iterable[Mapping], settings: Mapping) -> list[dict]:
    """PHP-FPM pools, one per site that runs PHP, each as the site's own account."""
    return [
        {"name": site["name"], "user": site["owner"], "root": site["root"],
         "socket": site["php_socket"]}
        for site in vhosts(requests, settings)
        if site["php"]
    ]


def hosting_accounts(requests: Iterable[Mapping], hashes: Mapping[str, str],
                     settings: Mapping) -> list[dict]:
    """Unix SFTP accounts, one per request with hosting."""
    root = settings["web_root"].rstrip("/")
    out = []
    for req in requests:
        if not req.get("hosting"):
            continue
        label = req["subdomain"]
        out.append(
            {
                "name": hosting_username(label),
                "home": f"{root}/{label}",
                # Suspended: the same hash, locked ("!" in front, as usermod -L does).
                "hash": ("!" if suspended(req) else "") + hashes[hosting_account_id(label)],
                "comment": req["agency"]["abbreviation"],
                "quota_bytes": req["hosting"]["quota_bytes"],
            }
        )
    return out


def storage_demand(requests: Iterable[Mapping], mail_path: str, web_path: str) -> list[dict]:
    """Bytes allocated by quotas, per storage path (mail and web)."""
    mail = 0
    web = 0
    for req in requests:
        if req.get("hosting"):
            web += req["hosting"]["quota_bytes"]
        for box in (req.get("mail") or {}).get("mailboxes", []):
            mail += box["quota_bytes"]
    return [
        {"path": mail_path, "bytes": mail, "kind": "mail"},
        {"path": web_path, "bytes": web, "kind": "web"},
    ]


def databases(requests: Iterable[Mapping], hashes: Mapping[str, str]) -> list[dict]:
    """MariaDB databases, one per request that asks for one, each with its own
    user of the same name (``hashes``: the register's MariaDB password hashes).
    A suspended request's user is locked; its data stays."""
    out = []
    for req in requests:
        if not wants_database(req):
            continue
        label = req["subdomain"]
        out.append({"name": database_name(label), "user": database_name(label),
                    "hash": hashes[database_account_id(label)], "locked": suspended(req)})
    return sorted(out, key=lambda d: d["name"])


def database_names(requests: Iterable[Mapping]) -> list[str]:
    """The databases the requests ask for (the storage check measures them)."""
    return sorted(database_name(r["subdomain"]) for r in requests if wants_database(r))
