"""Filters of the nginx role: per-site data for the one-call module and for certbot.

Pure functions over the role's plain data (``nginx_vhosts``), so hundreds of
sites cost one module call instead of one task each.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import jinja2
from ansible.errors import AnsibleFilterError


def _page_environment() -> jinja2.Environment:
    # Autoescaping: agency names reach an HTML page.
    return jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True)


def _site_path(pattern: str, name: str) -> str:
    return pattern.replace("{name}", name) if pattern else ""


def nginx_site_files(vhosts: Iterable[Mapping], page_template: str, org: str,
                     site_cert: str = "", site_key: str = "") -> list[dict]:
    """What the ``nginx_sites`` module needs per site: root, owner, page, certificate paths.

    ``page_template`` is the Jinja2 text of the placeholder page; it sees
    ``site`` (the vhost) and ``org``.
    """
    try:
        template = _page_environment().from_string(page_template)
    except jinja2.TemplateError as exc:
        raise AnsibleFilterError(f"placeholder page template: {exc}") from exc
    out = []
    for site in vhosts:
        try:
            page = template.render(site=site, org=org)
        except jinja2.TemplateError as exc:
            raise AnsibleFilterError(f"placeholder page of {site.get('name')}: {exc}") from exc
        out.append({
            "name": site["name"],
            "root": site["root"],
            "owner": site["owner"],
            "group": site.get("group") or "",
            "page": page,
            "tls_cert": _site_path(site_cert, site["name"]),
            "tls_key": _site_path(site_key, site["name"]),
        })
    return out


def nginx_acme_lineages(vhosts: Iterable[Mapping], wildcard_name: str,
                        wildcard_domains: list[str], per_site: bool,
                        prefix: str) -> list[dict]:
    """The certificates certbot keeps: the wildcard (DNS-01) and, if asked, one
    per site (HTTP-01, answered by the site itself on port 80)."""
    out = []
    if wildcard_domains:
        out.append({"name": wildcard_name, "domains": list(wildcard_domains), "challenge": "dns-01",
                    "reload": ["nginx"]})
    if per_site:
        out.extend({"name": f"{prefix}{site['name']}", "domains": list(site["server_names"]),
                    "challenge": "http-01", "reload": ["nginx"]}
                   for site in vhosts)
    names = [lineage["name"] for lineage in out]
    if len(names) != len(set(names)):
        raise AnsibleFilterError("two certificates would share a lineage name")
    return out


class FilterModule:
    def filters(self):
        return {
            "nginx_site_files": nginx_site_files,
            "nginx_acme_lineages": nginx_acme_lineages,
        }
