"""The storage forecast chart of the run report (section D), as SVG.

One chart per file system: capacity, reserve limit, allocation (quotas), use
and, when use grows, the forecast up to the day the disk fills. Every text
placed in the drawing is escaped, so the result may be embedded in HTML.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from .formatting import REGENCY_TZ, format_date_id, to_datetime

DAY = 86400.0
_MONTHS_SHORT = ("Jan", "Feb", "Mar", "Apr", "Mei", "Jun", "Jul", "Agu", "Sep", "Okt", "Nov",
                 "Des")
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
_TIME_STEPS = [60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, DAY, 2 * DAY,
               7 * DAY, 14 * DAY, 30 * DAY, 91 * DAY, 182 * DAY, 365 * DAY]
COLORS = {"capacity": "#1a1a1a", "reserve": "#8c8c8c", "allocated": "#d9822b",
          "used": "#1f5fa8", "full": "#c0392b"}
# Margins of the plot area inside the drawing: left, right, top, bottom.
_MARGINS = (78, 18, 14, 80)

esc = html.escape


def _nice_step(span: float, ticks: int = 5) -> float:
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    for mult in (1, 2, 2.5, 5, 10):
        if raw <= mult * power:
            return mult * power
    return 10 * power  # pragma: no cover


def _byte_axis(top: float) -> tuple[int, float, list[float]]:
    """Unit exponent, top of the axis in bytes and the tick values in bytes."""
    exp = 0
    while exp < len(_UNITS) - 1 and top >= 1024 ** (exp + 1):
        exp += 1
    unit = 1024 ** exp
    step = _nice_step(top / unit) * unit
    ticks = [i * step for i in range(int(top // step) + 2)]
    return exp, ticks[-1], ticks


def _tick_label(value: float, exp: int) -> str:
    number = value / 1024 ** exp
    text = f"{number:.1f}".rstrip("0").rstrip(".").replace(".", ",")
    return f"{text} {_UNITS[exp]}"


def _time_label(moment: datetime, step: float) -> str:
    local = moment.astimezone(REGENCY_TZ)
    day = f"{local.day} {_MONTHS_SHORT[local.month - 1]}"
    if step < DAY:
        return f"{day} {local:%H.%M}"
    return f"{day} {local.year}"


def _time_ticks(t0: float, t1: float) -> tuple[float, list[float]]:
    span = max(t1 - t0, 1.0)
    step = next((s for s in _TIME_STEPS if span / s <= 5), _TIME_STEPS[-1])
    offset = 8 * 3600  # ticks on round WITA times
    first = math.ceil((t0 + offset) / step) * step - offset
    ticks = []
    t = first
    while t <= t1:
        ticks.append(t)
        t += step
    return step, ticks


@dataclass(frozen=True)
class _Plot:
    """The plot area: drawing size, time range (POSIX seconds) and byte range."""

    width: int
    height: int
    t0: float
    t1: float
    y_top: float
    exp: int
    y_ticks: list[float]

    @property
    def left(self) -> int:
        return _MARGINS[0]

    @property
    def top(self) -> int:
        return _MARGINS[2]

    @property
    def pw(self) -> int:
        return self.width - _MARGINS[0] - _MARGINS[1]

    @property
    def ph(self) -> int:
        return self.height - _MARGINS[2] - _MARGINS[3]

    def x(self, t: float) -> float:
        return round(self.left + (t - self.t0) / (self.t1 - self.t0) * self.pw, 1)

    def y(self, v: float) -> float:
        return round(self.top + self.ph - v / self.y_top * self.ph, 1)


@dataclass(frozen=True)
class _Forecast:
    """Where the dashed forecast line ends (time, bytes) and whether it reaches the fill point."""

    t_last: float
    end_t: float
    end_y: float
    reaches_full: bool


def _time_range(entry: Mapping, times: list[float]) -> tuple[float, float]:
    t0, t1 = times[0], times[-1]
    if _grows(entry):
        # Far enough ahead to show the fill point, unless it is far beyond the history.
        t1 = times[-1] + min(entry["days_to_full"] * 1.08, max(3 * (t1 - t0) / DAY, 90.0)) * DAY
    if t1 - t0 < 600:  # runs minutes apart: show ten minutes around them
        pad = (600 - (t1 - t0)) / 2
        return t0 - pad, t1 + pad
    t1 += (t1 - t0) * 0.02
    t0 -= (t1 - t0) * 0.02
    return t0, t1


def _grows(entry: Mapping) -> bool:
    return bool(entry.get("status") == "growth" and entry.get("bytes_per_day"))


def _forecast_line(entry: Mapping, pts: list[Mapping], t_last: float,
                   t1: float) -> _Forecast | None:
    if not _grows(entry):
        return None
    full_t = t_last + entry["days_to_full"] * DAY
    end_t = min(full_t, t1)
    end_y = pts[-1]["fs_used_bytes"] + entry["bytes_per_day"] * (end_t - t_last) / DAY
    return _Forecast(t_last, end_t, end_y, end_t >= full_t - 1)


def _plot(entry: Mapping, pts: list[Mapping], times: list[float], width: int,
          height: int) -> tuple[_Plot, _Forecast | None]:
    t0, t1 = _time_range(entry, times)
    fc = _forecast_line(entry, pts, times[-1], t1)
    y_top = max([p["capacity_bytes"] for p in pts] + [p["allocated_bytes"] or 0 for p in pts]
                + [p["fs_used_bytes"] for p in pts] + [fc.end_y if fc else 0]) * 1.12 or 1.0
    exp, y_top, y_ticks = _byte_axis(y_top)
    return _Plot(width, height, t0, t1, y_top, exp, y_ticks), fc


def _axes(plot: _Plot) -> list[str]:
    """Grid lines with byte labels, time ticks with WITA labels, the frame."""
    left, top, pw, ph = plot.left, plot.top, plot.pw, plot.ph
    svg = []
    for v in plot.y_ticks:
        svg.append(f'<line x1="{left}" y1="{plot.y(v)}" x2="{left + pw}" y2="{plot.y(v)}" '
                   'stroke="#d9d9d9" stroke-width="0.8"/>')
        svg.append(f'<text x="{left - 6}" y="{plot.y(v) + 4}" text-anchor="end">'
                   f"{esc(_tick_label(v, plot.exp))}</text>")
    step, x_ticks = _time_ticks(plot.t0, plot.t1)
    for t in x_ticks:
        svg.append(f'<line x1="{plot.x(t)}" y1="{top + ph}" x2="{plot.x(t)}" '
                   f'y2="{top + ph + 4}" stroke="#000" stroke-width="0.8"/>')
        svg.append(f'<text x="{plot.x(t)}" y="{top + ph + 17}" text-anchor="middle">'
                   f"{esc(_time_label(datetime.fromtimestamp(t, UTC), step))}</text>")
    svg.append(f'<text x="{left + pw}" y="{top + ph + 31}" text-anchor="end" font-size="9" '
               'fill="#555">waktu WITA (UTC+8)</text>')
    svg.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" '
               'stroke="#000" stroke-width="0.8"/>')
    return svg


def _step_line(plot: _Plot, times: list[float], values: list[float | None],
               extend_to: float) -> str:
    """A value holds until the next record changes it; None: not known yet."""
    known = [(t, v) for t, v in zip(times, values, strict=True) if v is not None]
    corners = []
    for i, (t, v) in enumerate(known):
        if i:
            corners.append((t, known[i - 1][1]))
        corners.append((t, v))
    if known:
        corners.append((extend_to, known[-1][1]))
    return " ".join(f"{plot.x(t)},{plot.y(v)}" for t, v in corners)


def _series(plot: _Plot, pts: list[Mapping], times: list[float]) -> list[str]:
    """Capacity, reserve limit and allocation as steps; use as a line with dots."""
    svg = []
    for values, color, extra, extend_to in (
        ([p["capacity_bytes"] for p in pts], COLORS["capacity"], ' stroke-width="2"', plot.t1),
        ([p["capacity_bytes"] - p["reserve_bytes"] for p in pts], COLORS["reserve"],
         ' stroke-width="1.4" stroke-dasharray="2,3"', plot.t1),
        ([p["allocated_bytes"] for p in pts], COLORS["allocated"], ' stroke-width="1.6"',
         times[-1]),
    ):
        line = _step_line(plot, times, values, extend_to)
        if line:
            svg.append(f'<polyline points="{line}" fill="none" stroke="{color}"{extra}/>')
    used = " ".join(f"{plot.x(t)},{plot.y(p['fs_used_bytes'])}"
                    for t, p in zip(times, pts, strict=True))
    svg.append(f'<polyline points="{used}" fill="none" stroke="{COLORS["used"]}" '
               'stroke-width="1.8"/>')
    for t, p in zip(times, pts, strict=True):
        svg.append(f'<circle cx="{plot.x(t)}" cy="{plot.y(p["fs_used_bytes"])}" r="2.4" '
                   f'fill="{COLORS["used"]}"/>')
    return svg


def _forecast_marks(plot: _Plot, entry: Mapping, last_used: float,
                    fc: _Forecast | None) -> list[str]:
    """The dashed forecast and its fill point, or why there is no forecast."""
    right, bottom = plot.left + plot.pw - 6, plot.top + plot.ph - 8
    if fc is None:
        if entry.get("status") not in ("insufficient_history", "no_growth"):
            return []
        note = ("riwayat belum cukup untuk perkiraan"
                if entry["status"] == "insufficient_history" else "tidak ada pertumbuhan")
        return [f'<text x="{right}" y="{bottom}" text-anchor="end" fill="#555">'
                f"{esc(note)}</text>"]
    svg = [f'<line x1="{plot.x(fc.t_last)}" y1="{plot.y(last_used)}" x2="{plot.x(fc.end_t)}" '
           f'y2="{plot.y(fc.end_y)}" stroke="{COLORS["used"]}" stroke-width="1.8" '
           'stroke-dasharray="6,4"/>']
    label = f"penuh ±{format_date_id(entry['full_date'])}"
    if fc.reaches_full:
        cx, cy = plot.x(fc.end_t), plot.y(fc.end_y)
        svg.append(f'<circle cx="{cx}" cy="{cy}" r="4" fill="none" '
                   f'stroke="{COLORS["full"]}" stroke-width="1.8"/>')
        svg.append(f'<text x="{cx - 8}" y="{cy - 7}" text-anchor="end" '
                   f'fill="{COLORS["full"]}">{esc(label)}</text>')
    else:
        svg.append(f'<text x="{right}" y="{plot.y(fc.end_y) - 8}" text-anchor="end" '
                   f'fill="{COLORS["full"]}">{esc(label)} (di luar grafik)</text>')
    return svg


def _legend(plot: _Plot, reserve_pct: object) -> list[str]:
    """The legend, wrapped over as many rows as it needs."""
    legend = [("Kapasitas", COLORS["capacity"], "", False),
              (f"Batas cadangan{f' {reserve_pct}%' if reserve_pct is not None else ''}",
               COLORS["reserve"], "2,3", False),
              ("Teralokasi (kuota)", COLORS["allocated"], "", False),
              ("Terpakai (sistem berkas)", COLORS["used"], "", True),
              ("Perkiraan", COLORS["used"], "6,4", False)]
    svg = []
    lx, ly = plot.left, plot.top + plot.ph + 48
    for text, color, dash, dot in legend:
        item_w = 34 + len(text) * 6.6
        if lx + item_w > plot.width - _MARGINS[1]:
            lx, ly = plot.left, ly + 18
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        svg.append(f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 24}" y2="{ly - 4}" '
                   f'stroke="{color}" stroke-width="2"{dash_attr}/>')
        if dot:
            svg.append(f'<circle cx="{lx + 12}" cy="{ly - 4}" r="2.4" fill="{color}"/>')
        svg.append(f'<text x="{lx + 30}" y="{ly}">{esc(text)}</text>')
        lx += item_w + 14
    return svg


def chart_svg(entry: Mapping, width: int = 680, height: int = 300) -> str:
    """Capacity, reserve limit, allocation, use and the forecast of one file system.

    ``entry`` is one item of :func:`sop.storage.forecast`. Text is escaped;
    the result is safe to embed in the report's HTML.
    """
    pts = entry.get("points") or []
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
           f'width="17cm" height="{17 * height / width:.2f}cm" '
           f'font-family="DejaVu Sans, sans-serif" font-size="11">',
           f"<title>{esc(str(entry.get('host')))}:{esc(str(entry.get('mount')))}</title>"]
    if not pts:
        svg.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">'
                   "Belum ada data</text></svg>")
        return "".join(svg)
    times = [to_datetime(p["taken"]).timestamp() for p in pts]
    plot, fc = _plot(entry, pts, times, width, height)
    svg += _axes(plot)
    svg += _series(plot, pts, times)
    svg += _forecast_marks(plot, entry, pts[-1]["fs_used_bytes"], fc)
    svg += _legend(plot, entry.get("reserve_percent"))
    svg.append("</svg>")
    return "".join(svg)
