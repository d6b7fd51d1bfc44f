"""Zone rendering helpers for the bind role.

- ``bind_zone_serial``: serials that move only with content, never fall below
  the serial the live server answers, and never exceed ten digits.
- ``bind_soa_serial``: the serial in ``dig +short SOA`` output.
- ``bind_rname``: the SOA RNAME of a mail address.
- ``bind_record``: one zone-file line from a record mapping, TXT data quoted
  and split into character-strings of at most 255 bytes.
"""

from __future__ import annotations

import datetime as dt
import re

from ansible.errors import AnsibleFilterError

_SERIAL = re.compile(r"^\s*(\d{1,10})\s*;\s*serial\b", re.MULTILINE)
_HASH = re.compile(r"^;\s*content-hash:\s*([0-9a-f]+)\s*$", re.MULTILINE)
MAX_SERIAL = 2**32 - 1
# RFC 1035: a character-string is a length byte and at most 255 bytes.
TXT_CHUNK = 255
_TYPE = re.compile(r"^[A-Z][A-Z0-9]{0,15}$")
_NAME = re.compile(r"^(@|\*|[A-Za-z0-9_*](?:[A-Za-z0-9_.*-]{0,252}))$")
_TEXT_TYPES = {"TXT", "SPF"}


def bind_zone_serial(current_text: str, content_hash: str, live_serial=None,
                     today: str | None = None) -> int:
    """Serial for a zone whose content hashes to ``content_hash``.

    Unchanged content keeps the current serial, unless the live server answers
    a higher one. Changed content gets ``max(current + 1, live + 1,
    YYYYMMDD00)``: date-based while fewer than 100 changes a day, and still
    increasing after (borrowing the next day's numbers, ten digits).
    """
    day = dt.date.fromisoformat(today) if today else dt.datetime.now(dt.UTC).date()
    text = current_text or ""
    serial_match = _SERIAL.search(text)
    hash_match = _HASH.search(text)
    current = int(serial_match.group(1)) if serial_match else 0
    live = int(live_serial) if str(live_serial or "").strip().isdigit() else 0
    if serial_match and hash_match and hash_match.group(1) == content_hash and current >= live:
        return current
    new = max(current + 1, live + 1, int(day.strftime("%Y%m%d")) * 100)
    if new > MAX_SERIAL:  # RFC 1982 wrap-around is out of scope: stay in range.
        raise AnsibleFilterError(f"zone serial would exceed {MAX_SERIAL}")
    return new


def bind_soa_serial(dig_output) -> int:
    """The serial in ``dig +short SOA`` output; 0 when there is no answer.

    A ``serial: N`` line (``rndc zonestatus``: the unsigned zone's serial of
    a signed zone) gives N too.
    """
    for line in str(dig_output or "").splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0] == "serial:" and fields[1].isdigit():
            return int(fields[1])
        if len(fields) == 7 and fields[2].isdigit():
            return int(fields[2])
    return 0


def bind_rname(mail: str) -> str:
    """SOA RNAME from a mail address: dots in the local part are escaped."""
    local, _, domain = mail.partition("@")
    return local.replace(".", "\\.") + "." + domain.rstrip(".") + "."


def bind_txt(text: str) -> str:
    """TXT data as quoted character-strings of at most 255 bytes each.

    ``"`` and ``\\`` are escaped; bytes outside printable ASCII are written as
    ``\\DDD`` so a multi-byte character may be split safely.
    """
    chunks: list[str] = []
    current: list[str] = []
    for count, byte in enumerate(str(text).encode("utf-8")):
        if count and count % TXT_CHUNK == 0:
            chunks.append("".join(current))
            current = []
        char = chr(byte)
        if char in '"\\':
            current.append("\\" + char)
        elif 0x20 <= byte < 0x7F:
            current.append(char)
        else:
            current.append(f"\\{byte:03d}")
    chunks.append("".join(current))
    return " ".join(f'"{c}"' for c in chunks)


def bind_record(record) -> str:
    """One zone-file line (name, TTL, class, type, data) from a record mapping.

    ``value`` is zone-file syntax, except for TXT (and SPF): there it is the
    text itself, quoted and split here; a TXT value that already starts with
    a double quote is taken as zone-file syntax and written unchanged.
    Control characters are refused so no value can add lines to the zone.
    """
    try:
        name, rtype, value = str(record["name"]), str(record["type"]).upper(), record["value"]
    except (KeyError, TypeError) as exc:
        raise AnsibleFilterError(f"zone record {record!r} lacks name, type or value") from exc
    value = str(value)
    for field, text in (("name", name), ("type", rtype), ("value", value)):
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
            raise AnsibleFilterError(
                f"zone record {name!r} {rtype}: control character in its {field}"
            )
    if not _NAME.match(name):
        raise AnsibleFilterError(f"zone record name {name!r} is not a relative DNS name")
    if not _TYPE.match(rtype):
        raise AnsibleFilterError(f"zone record {name!r}: {rtype!r} is not a record type")
    ttl = record.get("ttl")
    if ttl is not None and ttl != "" and not str(ttl).isdigit():
        raise AnsibleFilterError(f"zone record {name!r} {rtype}: TTL {ttl!r} is not a number")
    if rtype in _TEXT_TYPES and not value.lstrip().startswith('"'):
        value = bind_txt(value)
    ttl_text = "" if ttl is None or ttl == "" else str(ttl)
    return f"{name}\t{ttl_text}\tIN\t{rtype}\t{value}"


class FilterModule:
    def filters(self):
        return {
            "bind_zone_serial": bind_zone_serial,
            "bind_soa_serial": bind_soa_serial,
            "bind_rname": bind_rname,
            "bind_txt": bind_txt,
            "bind_record": bind_record,
        }
