"""Filters of the mail_clients role: which certificates to ask for, which exist."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

LABELS = ("autoconfig", "autodiscover", "mta-sts")


def mail_clients_acme_certificates(domains: Iterable[str], covered: Iterable[str]) -> list[dict]:
    """One HTTP-01 certificate per domain not in ``covered``, naming its three names."""
    skip = set(covered)
    return [{"name": d, "domains": [f"{label}.{d}" for label in LABELS],
             "challenge": "http-01", "reload": ["nginx"]}
            for d in sorted(set(domains) - skip)]


def mail_clients_own_certs(found: Mapping | None, prefix: str) -> dict[str, str]:
    """Domain -> the folder of its issued certificate, from a find of the live folders."""
    out = {}
    for item in (found or {}).get("files", []):
        name = os.path.basename(item["path"])
        if name.startswith(prefix):
            out[name[len(prefix):]] = item["path"]
    return out


class FilterModule:
    def filters(self):
        return {
            "mail_clients_acme_certificates": mail_clients_acme_certificates,
            "mail_clients_own_certs": mail_clients_own_certs,
        }
