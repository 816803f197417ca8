"""Server-side SVG charts.

Why SVG rendered here rather than a JavaScript chart library: the page works without
JavaScript and without a CDN (no network), nothing is built, the chart is in the HTML the
Django test client sees (so tests can read it), it prints and scales on a phone, and it is
accessible: each chart has a <title>, a <desc> with its numbers, and a table fallback.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

from django.utils.safestring import SafeString, mark_safe

UNITS = ["B", "KB", "MB", "GB", "TB", "PB"]


def human_bytes(value: float | None) -> str:
    if value is None:
        return "—"
    size = float(value)
    for unit in UNITS:
        if abs(size) < 1000 or unit == UNITS[-1]:
            if unit != "B":
                return f"{size:.1f} {unit}"
            # whole bytes as such; a fraction (a rate, an average) keeps one decimal below 10 B
            return f"{size:.0f} B" if size == int(size) or abs(size) >= 10 else f"{size:.1f} B"
        size /= 1000
    return f"{size:.1f} PB"  # pragma: no cover


@dataclass(frozen=True)
class Series:
    label: str
    points: Sequence[tuple[datetime, float]]
    css_class: str = "s1"


def _nice_max(value: float, *, whole: bool = False) -> float:
    """The top of the y-axis: four equal steps of a "round" size (1, 2, 2.5 or 5 times a power of
    ten) that reach `value`. `whole`: the axis counts whole units (bytes), so a step is a whole number."""
    quarter = value / 4
    if quarter <= 0:
        return 4.0 if whole else 1.0
    magnitude = 10 ** math.floor(math.log10(quarter))
    for step in (1, 2, 2.5, 5, 10):
        size = step * magnitude
        if whole and (size < 1 or size != int(size)):
            continue
        if quarter <= size * (1 + 1e-9):
            return 4 * size
    return 4 * 10 * magnitude  # pragma: no cover


def _time_format(span_s: float) -> str:
    if span_s <= 36 * 3600:
        return "%H:%M"
    return "%b %d"


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    formatter=human_bytes,
    start: datetime | None = None,
    end: datetime | None = None,
    whole: bool = False,
    width: int = 640,
    height: int = 200,
) -> SafeString:
    """A responsive line chart (viewBox) with a y-axis in `formatter` units and time on the x-axis.

    `start`/`end`: the window the chart covers (the data's own range if not given), so a chart of
    the last day spans a day even when usage began an hour ago. `whole`: the values are whole
    units (bytes), so the y-axis never labels fractions that round to the same text.
    """
    pad_l, pad_r, pad_t, pad_b = 76, 16, 12, 28
    all_points = [p for s in series for p in s.points]
    title_e = escape(title)
    if not all_points:
        return mark_safe(f'<p class="chart-empty">{title_e}: no usage recorded in this period yet.</p>')
    t0 = (start or min(p[0] for p in all_points)).timestamp()
    t1 = (end or max(p[0] for p in all_points)).timestamp()
    span = max(t1 - t0, 1.0)
    top = _nice_max(max(p[1] for p in all_points), whole=whole)
    plot_w, plot_h = width - pad_l - pad_r, height - pad_t - pad_b

    def x(ts: datetime) -> float:
        return pad_l + (ts.timestamp() - t0) / span * plot_w

    def y(v: float) -> float:
        return pad_t + plot_h - (v / top) * plot_h

    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{title_e}" '
        f'preserveAspectRatio="xMidYMid meet">',
        f"<title>{title_e}</title>",
    ]
    desc = "; ".join(
        f"{escape(s.label)}: latest {escape(formatter(s.points[-1][1]))}, "
        f"peak {escape(formatter(max(v for _, v in s.points)))}"
        for s in series
        if s.points
    )
    parts.append(f"<desc>{desc}</desc>")
    for i in range(5):  # grid and y labels
        value = top * i / 4
        yy = y(value)
        parts.append(f'<line class="grid" x1="{pad_l}" x2="{width - pad_r}" y1="{yy:.1f}" y2="{yy:.1f}"/>')
        parts.append(
            f'<text class="axis y" x="{pad_l - 6}" y="{yy + 4:.1f}" text-anchor="end">'
            f"{escape(formatter(value))}</text>"
        )
    fmt = _time_format(span)
    if span > 36 * 3600:  # days: a label on every day (or every few), at the day's start
        every = math.ceil(span / 86400 / 6) * 86400
        stamps = [t0 + k * every for k in range(int(span // every) + 1)]
    else:  # hours: both ends and three between
        stamps = [t0 + span * i / 4 for i in range(5)]
    for ts_s in stamps:
        xx = pad_l + (ts_s - t0) / span * plot_w
        anchor = "start" if ts_s == t0 else ("end" if xx >= width - pad_r - 1 else "middle")
        label = datetime.fromtimestamp(ts_s, tz=UTC).strftime(fmt)
        parts.append(
            f'<text class="axis x" x="{xx:.1f}" y="{height - 8}" text-anchor="{anchor}">'
            f"{escape(label)}</text>"
        )
    for s in series:
        if not s.points:
            continue
        coords = " ".join(f"{x(ts):.1f},{y(v):.1f}" for ts, v in s.points)
        parts.append(
            f'<polyline class="line {escape(s.css_class)}" points="{coords}">'
            f"<title>{escape(s.label)}</title></polyline>"
        )
        if len(s.points) == 1:
            ts, v = s.points[0]
            parts.append(
                f'<circle class="line {escape(s.css_class)}" cx="{x(ts):.1f}" cy="{y(v):.1f}" r="3"/>'
            )
    parts.append("</svg>")
    return mark_safe("".join(parts))
