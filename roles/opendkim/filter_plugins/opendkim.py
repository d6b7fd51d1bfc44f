"""DKIM TXT record text from the public keys the role read on the mail host."""

from __future__ import annotations

import base64
import binascii

from ansible.errors import AnsibleFilterError


def opendkim_public_keys(lines: list[str], selector: str) -> list[dict]:
    """``"<domain> <base64 DER public key>"`` lines -> one record per domain.

    ``txt`` is the record's text, unsplit; the DNS side cuts it into
    255-byte strings.
    """
    out = []
    for line in lines:
        domain, _, key = line.strip().partition(" ")
        if not domain:
            continue
        try:
            base64.b64decode(key, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise AnsibleFilterError(f"DKIM public key of {domain} is not base64") from exc
        if not key:
            raise AnsibleFilterError(f"DKIM public key of {domain} is empty")
        out.append({
            "domain": domain,
            "selector": selector,
            "name": f"{selector}._domainkey.{domain}",
            "txt": f"v=DKIM1; h=sha256; k=rsa; s=email; p={key}",
        })
    return sorted(out, key=lambda k: k["domain"])


class FilterModule:
    def filters(self):
        return {"opendkim_public_keys": opendkim_public_keys}
