"""Line charts as inline SVG, drawn on the server: no chart library and no CDN at run time.

Our own code rather than a charting package: the console needs a few line charts of counters over
fixed buckets, and an SVG of polylines is a few dozen lines, with nothing for the browser to load.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from html import escape

from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 560, 180
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 10, 34
PALETTE = ("#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2")


@dataclass(frozen=True)
class Series:
    label: str
    values: list[float]


def _nice_max(value: float) -> float:
    """The smallest 1, 2 or 5 × 10^n at or above ``value`` (at least 1): a readable axis top."""
    if value <= 1:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def line_chart(*, title: str, buckets: list[datetime], series: list[Series], time_format: str) -> SafeString:
    """An SVG chart of ``series`` over ``buckets`` (equal-length lists), with axes and a legend.

    ``time_format``: strftime for the x-axis labels (5 labels at most). Text is escaped.
    """
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = _nice_max(max((max(s.values, default=0.0) for s in series), default=0.0))
    count = max(len(buckets), 1)

    def x(i: int) -> float:
        return LEFT + (plot_w * i / (count - 1) if count > 1 else plot_w / 2)

    def y(v: float) -> float:
        return TOP + plot_h - plot_h * (v / top)

    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" '
        f'preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for fraction in (0, 0.5, 1):
        gy = y(top * fraction)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{gy:.1f}" y2="{gy:.1f}" stroke="#e5e7eb"/>')
        parts.append(
            f'<text x="{LEFT - 4}" y="{gy + 4:.1f}" text-anchor="end" font-size="10" fill="#6b7280">'
            f"{escape(_number(top * fraction))}</text>"
        )
    if buckets:
        step = max(1, (len(buckets) - 1) // 4)
        for i in range(0, len(buckets), step):
            parts.append(
                f'<text x="{x(i):.1f}" y="{HEIGHT - BOTTOM + 14}" text-anchor="middle" font-size="10" '
                f'fill="#6b7280">{escape(buckets[i].strftime(time_format))}</text>'
            )
    for n, one in enumerate(series):
        color = PALETTE[n % len(PALETTE)]
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(one.values))
        if points:
            parts.append(
                f'<polyline class="series" data-label="{escape(one.label)}" data-total="{sum(one.values):g}" '
                f'fill="none" stroke="{color}" stroke-width="1.6" points="{points}"/>'
            )
        lx = LEFT + n * 130
        parts.append(f'<rect x="{lx}" y="{HEIGHT - 12}" width="10" height="3" fill="{color}"/>')
        parts.append(
            f'<text x="{lx + 14}" y="{HEIGHT - 8}" font-size="10" fill="#374151">'
            f"{escape(one.label)} ({escape(_number(sum(one.values)))})</text>"
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated text is escaped above
