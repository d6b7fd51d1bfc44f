"""Zone serials that move only with content, and never exceed ten digits."""

from __future__ import annotations

import datetime as dt
import re

_SERIAL = re.compile(r"^\s*(\d{1,10})\s*;\s*serial\b", re.MULTILINE)
_HASH = re.compile(r"^;\s*content-hash:\s*([0-9a-f]+)\s*$", re.MULTILINE)
MAX_SERIAL = 2**32 - 1


def bind_zone_serial(current_text: str, content_hash: str, live_serial=None,
                     today: str | None = None) -> int:
    """Serial for a zone whose content hashes to ``content_hash``.

    Unchanged content keeps the current serial. Changed content gets
    ``max(current + 1, live + 1, YYYYMMDD00)``: date-based while fewer than 100
    changes a day, still increasing (borrowing the next day's numbers) after.
    """
    day = dt.date.fromisoformat(today) if today else dt.datetime.now(dt.UTC).date()
    text = current_text or ""
    serial_match = _SERIAL.search(text)
    hash_match = _HASH.search(text)
    current = int(serial_match.group(1)) if serial_match else 0
    live = int(live_serial) if str(live_serial or "").isdigit() else 0
    if serial_match and hash_match and hash_match.group(1) == content_hash and current >= live:
        return current
    new = max(current + 1, live + 1, int(day.strftime("%Y%m%d")) * 100)
    if new > MAX_SERIAL:  # RFC 1982 arithmetic is out of scope: stay in range.
        raise ValueError(f"zone serial would exceed {MAX_SERIAL}")
    return new


def bind_rname(mail: str) -> str:
    """SOA RNAME from a mail address: dots in the local part are escaped."""
    local, _, domain = mail.partition("@")
    return local.replace(".", "\\.") + "." + domain.rstrip(".") + "."


class FilterModule:
    def filters(self):
        return {"bind_zone_serial": bind_zone_serial, "bind_rname": bind_rname}
