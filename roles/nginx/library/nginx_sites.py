#!/usr/bin/python
"""Ansible module: what every nginx site needs on disk, in one call.

Creates missing document roots, writes the placeholder page into every root
that has no index file yet (never over an agency's own page), and tells which
sites have their TLS certificate and key on the host, so the configuration
only names certificates that exist.
"""

from __future__ import annotations

import grp
import os
import pwd
import tempfile

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: nginx_sites
short_description: >-
  Document roots, placeholder pages and certificate presence of every site in one call
description:
  - For every site, creates the document root when it is missing (its
    parents owned by root, the root itself by the site's owner).
  - Writes the placeholder page C(index.html) only into a root holding none
    of C(index_names), atomically and owned by the site's owner: an agency's
    own upload is never overwritten, and a page it removed is put back only
    while the folder has no index file at all.
  - Reports whether each site's own certificate and key exist, and whether
    the default ones do.
  - Supports check mode.
options:
  sites:
    description: Sites.
    type: list
    elements: dict
    required: true
    suboptions:
      name: {description: Site name., type: str, required: true}
      root: {description: Document root (absolute)., type: str, required: true}
      owner: {description: Owner of the root and the page., type: str, required: true}
      group: {description: Group (default the owner's primary group)., type: str, default: ""}
      page: {description: Placeholder page content., type: str, required: true}
      tls_cert: {description: The site's own certificate path or empty., type: str, default: ""}
      tls_key: {description: Its key path or empty., type: str, default: ""}
  index_names:
    description: Files that count as a site's index.
    type: list
    elements: str
    default: [index.html]
  page_name: {description: File name of the placeholder page., type: str, default: index.html}
  root_mode: {description: Mode of a created document root., type: str, default: "0755"}
  page_mode: {description: Mode of a placeholder page., type: str, default: "0644"}
  default_tls_cert: {description: Default certificate path or empty., type: str, default: ""}
  default_tls_key: {description: Its key path or empty., type: str, default: ""}
"""

RETURN = r"""
roots_created: {description: Document roots created., type: list, returned: always}
pages_created: {description: Placeholder pages written., type: list, returned: always}
tls:
  description: Site name to true when its own certificate and key exist.
  type: dict
  returned: always
default_tls:
  description: True when the default certificate and key exist.
  type: bool
  returned: always
"""


def tls_present(cert: str, key: str) -> bool:
    return bool(cert and key) and os.path.isfile(cert) and os.path.isfile(key)


def owner_ids(owner: str, group: str) -> tuple[int, int] | None:
    """(uid, gid), or None when the account does not exist (yet, in check mode)."""
    try:
        pw = pwd.getpwnam(owner)
        gid = grp.getgrnam(group).gr_gid if group else pw.pw_gid
    except KeyError:
        return None
    return pw.pw_uid, gid


def write_page(root: str, name: str, content: str, ids: tuple[int, int], mode: int) -> None:
    """Write a new file atomically; the folder belongs to the agency, so nothing is followed."""
    fd, tmp = tempfile.mkstemp(prefix=".sop-", dir=root)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(content)
            fh.flush()
            os.fchown(fh.fileno(), *ids)
            os.fchmod(fh.fileno(), mode)
        # link() fails rather than replace a file the agency created meanwhile.
        os.link(tmp, os.path.join(root, name), follow_symlinks=False)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "sites": {
                "type": "list", "elements": "dict", "required": True,
                "options": {
                    "name": {"type": "str", "required": True},
                    "root": {"type": "str", "required": True},
                    "owner": {"type": "str", "required": True},
                    "group": {"type": "str", "default": ""},
                    "page": {"type": "str", "required": True},
                    "tls_cert": {"type": "str", "default": ""},
                    "tls_key": {"type": "str", "default": ""},
                },
            },
            "index_names": {"type": "list", "elements": "str", "default": ["index.html"]},
            "page_name": {"type": "str", "default": "index.html"},
            "root_mode": {"type": "str", "default": "0755"},
            "page_mode": {"type": "str", "default": "0644"},
            "default_tls_cert": {"type": "str", "default": ""},
            "default_tls_key": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    p = module.params
    check = module.check_mode
    root_mode, page_mode = int(p["root_mode"], 8), int(p["page_mode"], 8)
    index_names = set(p["index_names"]) | {p["page_name"]}
    result = {"changed": False, "roots_created": [], "pages_created": [], "tls": {},
              "default_tls": tls_present(p["default_tls_cert"], p["default_tls_key"])}

    for site in p["sites"]:
        name, root = site["name"], site["root"]
        if not os.path.isabs(root) or os.path.normpath(root) != root or root == "/":
            module.fail_json(msg=f"site {name}: root must be a normalized absolute path", **result)
        result["tls"][name] = tls_present(site["tls_cert"], site["tls_key"])
        ids = owner_ids(site["owner"], site["group"])
        if ids is None and not check:
            module.fail_json(msg=f"site {name}: owner {site['owner']} or its group does not exist",
                             **result)
        if os.path.islink(root) or (os.path.lexists(root) and not os.path.isdir(root)):
            module.fail_json(msg=f"site {name}: {root} is not a folder", **result)
        if not os.path.isdir(root):
            if not check:
                parent = os.path.dirname(root)
                if not os.path.isdir(parent):
                    os.makedirs(parent, 0o755)
                os.mkdir(root, root_mode)
                os.chown(root, *ids)
                os.chmod(root, root_mode)
            result["roots_created"].append(root)
            result["changed"] = True
        elif any(os.path.lexists(os.path.join(root, index)) for index in index_names):
            continue
        if not check:
            write_page(root, p["page_name"], site["page"], ids, page_mode)
        result["pages_created"].append(os.path.join(root, p["page_name"]))
        result["changed"] = True

    module.exit_json(**result)


if __name__ == "__main__":
    main()
