"""Numbers, dates, sizes and table cells as the regency's documents write them.

Shared by the documents (``documents``), the storage supervision (``storage``)
and the chart (``chart``); it imports nothing of the package, so every layer
may use it. Times are shown in the regency's one time zone, WITA
(Asia/Makassar, UTC+8 all year: Indonesia has no daylight saving time).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

# Asia/Makassar. A fixed offset: the zone has had no other since 1932.
REGENCY_TZ = timezone(timedelta(hours=8), "WITA")

MONTHS_ID = (
    "Januari",
    "Februari",
    "Maret",
    "April",
    "Mei",
    "Juni",
    "Juli",
    "Agustus",
    "September",
    "Oktober",
    "November",
    "Desember",
)
WEEKDAYS_ID = ("Senin", "Selasa", "Rabu", "Kamis", "Jumat", "Sabtu", "Minggu")

# Words kept in lower case when an upper-case letterhead line is used in a
# sentence ("DINAS KOMUNIKASI DAN INFORMATIKA" -> "Dinas Komunikasi dan
# Informatika").
_LOWER_WORDS = frozenset({"dan", "atau", "di", "ke", "dari", "untuk", "pada", "serta", "yang"})


def decimal_id(value: float, digits: int = 1) -> str:
    """``1234.5`` -> ``"1.234,5"`` (Indonesian separators)."""
    text = f"{value:,.{digits}f}"
    return text.replace(",", "\0").replace(".", ",").replace("\0", ".")


def integer_id(value: int) -> str:
    """``12345`` -> ``"12.345"``."""
    return f"{value:,d}".replace(",", ".")


def format_duration_id(seconds: float) -> str:
    """Format a duration for people: ``"12,3 detik"``, ``"1 menit 5 detik"``.

    Below one minute the value keeps one decimal; from one minute on it is
    rounded to whole seconds and zero parts are left out
    (``"2 menit"``, ``"1 jam 5 detik"``).
    """
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise TypeError(f"duration must be a number of seconds, not {seconds!r}")
    if seconds != seconds or seconds < 0:  # NaN or negative
        raise ValueError(f"duration must be zero or positive, not {seconds!r}")
    if round(seconds, 1) < 60:
        return f"{decimal_id(seconds, 1)} detik"
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = []
    if hours:
        parts.append(f"{integer_id(hours)} jam")
    if minutes:
        parts.append(f"{minutes} menit")
    if secs:
        parts.append(f"{secs} detik")
    return " ".join(parts)


def to_datetime(value: str | datetime) -> datetime:
    """An ISO timestamp (or a datetime) as an aware datetime; naive ones are UTC."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"not an ISO timestamp: {value!r}") from None
    else:
        raise TypeError(f"not a timestamp: {value!r}")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def to_regency_date(value: str | date) -> date:
    """The day of a date, or of a moment in the regency (WITA)."""
    if isinstance(value, datetime):
        return to_datetime(value).astimezone(REGENCY_TZ).date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10:
                return date.fromisoformat(text)
            return to_datetime(text).astimezone(REGENCY_TZ).date()
        except ValueError:
            pass
        raise ValueError(f"not an ISO date: {value!r}")
    raise TypeError(f"not a date: {value!r}")


def regency_today() -> date:
    """Today in the regency (WITA), whatever the machine's time zone."""
    return datetime.now(REGENCY_TZ).date()


def format_date_id(iso: str | date) -> str:
    """``"2026-11-20"`` (or a ``date``/``datetime``/ISO timestamp) -> ``"20 November 2026"``.

    A moment is dated in WITA: ``"2026-11-30T20:00:00Z"`` is 1 December there.
    """
    day = to_regency_date(iso)
    return f"{day.day} {MONTHS_ID[day.month - 1]} {day.year}"


def format_weekday_id(iso: str | date) -> str:
    return WEEKDAYS_ID[to_regency_date(iso).weekday()]


def format_datetime_id(value: str | datetime | None) -> str:
    """``"2026-11-30T05:21:00+00:00"`` -> ``"30 November 2026 pukul 13.21.00 WITA"``.

    Every moment is shown in WITA, whatever zone it was written in; a
    timestamp without a zone is taken as UTC (the runner's records).
    """
    if value is None or value == "":
        return "-"
    moment = to_datetime(value).astimezone(REGENCY_TZ)
    return f"{format_date_id(moment.date())} pukul {moment:%H.%M.%S} WITA"


def format_bytes_id(value: int | None) -> str:
    """Bytes in binary units with a decimal comma: ``2147483648`` -> ``"2,0 GiB"``."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"size must be a number of bytes, not {value!r}")
    sign = "-" if value < 0 else ""
    size = abs(value)
    if size < 1024:
        return f"{sign}{int(size)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        size /= 1024
        if round(size, 1) < 1024 or unit == "PiB":
            return f"{sign}{decimal_id(size, 1)} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def format_size_id(value: int | None) -> str:
    """A quota as staff write it: ``2147483648`` -> ``"2 GB"``, ``1610612736`` -> ``"1,5 GB"``.

    The units are the request format's (K, M, G, T: multiples of 1024), named
    KB, MB, GB and TB as on the forms; no decimals for a whole number.
    """
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"size must be a number of bytes, not {value!r}")
    if value < 0:
        raise ValueError(f"size must be zero or positive, not {value!r}")
    if value < 1024:
        return f"{int(value)} byte"
    size = float(value)
    for unit in ("KB", "MB", "GB", "TB"):
        size /= 1024
        if round(size, 1) < 1024 or unit == "TB":
            if round(size, 1).is_integer():
                return f"{integer_id(int(round(size, 1)))} {unit}"
            return f"{decimal_id(size, 1)} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def format_minutes_id(minutes: int | float | None) -> str:
    """The SOP's standard time: ``15`` -> ``"15 menit"``."""
    if minutes is None:
        return "-"
    if float(minutes).is_integer():
        return f"{int(minutes)} menit"
    return f"{decimal_id(minutes, 1)} menit"


def title_id(text: str) -> str:
    """Sentence use of an upper-case letterhead line, Indonesian title case."""
    words = []
    for index, word in enumerate(text.split()):
        lower = word.lower()
        if index and lower in _LOWER_WORDS:
            words.append(lower)
        else:
            words.append("-".join(part[:1].upper() + part[1:] for part in lower.split("-")))
    return " ".join(words)


def md_cell(value: Any) -> str:
    """A value made safe for one Markdown table cell."""
    if value is None:
        return "-"
    text = str(value).replace("\\", "\\\\").replace("|", "\\|")
    text = re.sub(r"\s*[\r\n]+\s*", " ", text)
    return text.strip() or "-"
