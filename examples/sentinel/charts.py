"""Charts drawn on the server: no JavaScript, no build step.

Each function returns markup ready for a template (``{{ chart }}``); every text
that comes from data is escaped. The charts scale with their card: widths are
percentages and text keeps its size in pixels, so a phone shows the same 12 px
labels as a desktop (a chart drawn in a fixed viewBox would shrink them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

from markupsafe import Markup
from markupsafe import escape

__all__ = ["Bar", "Level", "bars", "level", "meter", "sparkline", "trend"]

INK = "#1f2937"
MUTED = "#5b6472"
GRID = "#e5e7eb"
ACCENT = "#4f46e5"
SECOND = "#0f766e"
WARN = "#d97706"
DANGER = "#dc2626"
FINE = "#0d9488"

#: How close a use is to its limit: the meter's colour and the class of its text.
Level = Literal["ok", "near", "full"]
_COLOURS: dict[Level, str] = {"ok": FINE, "near": WARN, "full": DANGER}


def _fmt(value: float) -> str:
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    if value >= 1000:
        return f"{value / 1000:.1f}k"
    return f"{value:,.0f}"


def _nice_max(value: float) -> float:
    """A round axis maximum at or above ``value`` (1, 2, 2.5, 5 times a power of ten)."""
    if value <= 0:
        return 1
    # An int: the exponent is never negative (mypy types int ** int as Any).
    magnitude: int = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    note: str = ""


def bars(rows: Sequence[Bar]) -> Markup:
    """A bar list, largest first, each bar on a log scale with its figure beside it.

    On a linear scale one busy feature (thousands of chat messages) flattens every
    other bar to a sliver; on a log scale 10 and 100 stay apart, and the figures
    say the exact counts.
    """
    if not rows:
        return Markup('<p class="empty">No usage recorded yet this month.</p>')
    ordered = sorted(rows, key=lambda row: row.value, reverse=True)
    top = math.log10(1 + max(ordered[0].value, 1))
    items = []
    for row in ordered:
        share = 100 * math.log10(1 + max(row.value, 0)) / top
        items.append(
            f'<li title="{escape(row.label)}: {row.value:,}">'
            f'<span class="label">{escape(row.label)}</span>'
            f'<span class="track"><span class="fill" style="width:{share:.1f}%"></span></span>'
            f'<span class="figure">{_fmt(row.value)} <small>{escape(row.note)}</small></span></li>'
        )
    return Markup(
        f'<ol class="bars">{"".join(items)}</ol>'
        '<p class="scale">Bar lengths are on a log scale (1, 10, 100, 1,000 uses), so that '
        "the busiest feature does not flatten the others; the figures are exact.</p>"
    )


def level(used: int, limit: int) -> Level:
    """``full`` at the limit, ``near`` from 80 % of it, ``ok`` below."""
    share = used / limit if limit else 1.0
    return "full" if share >= 1 else "near" if share >= 0.8 else "ok"


def meter(used: int, limit: int) -> Markup:
    """A bar of ``used`` out of ``limit``, as wide as its cell, coloured by :func:`level`."""
    share = min(1.0, used / limit) if limit else 1.0
    fill = (
        f'<rect width="{100 * share:.1f}%" height="10" rx="5" '
        f'fill="{_COLOURS[level(used, limit)]}"/>'
        if used > 0
        else ""
    )
    return Markup(
        f'<svg class="meter" width="100%" height="10" role="img" aria-label="{used} of {limit}">'
        f'<rect width="100%" height="10" rx="5" fill="#e9edf3"/>{fill}</svg>'
    )


def sparkline(values: Sequence[int], *, width: int = 120, height: int = 28) -> Markup:
    """A small line of ``values`` (oldest first), with the last point marked."""
    if not values:
        return Markup("")
    top = max(values) or 1
    step = width / max(1, len(values) - 1)
    points = [(i * step, height - 3 - (height - 6) * v / top) for i, v in enumerate(values)]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    x, y = points[-1]
    return Markup(
        f'<svg class="spark" viewBox="-3 0 {width + 6} {height}" width="{width + 6}" '
        f'height="{height}" aria-hidden="true">'
        f'<polyline points="{path}" fill="none" stroke="{ACCENT}" stroke-width="1.8" '
        'stroke-linejoin="round" stroke-linecap="round"/>'
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.8" fill="{ACCENT}"/></svg>'
    )


def trend(
    labels: Sequence[str],
    primary: Sequence[int],
    secondary: Sequence[int],
    *,
    names: tuple[str, str] = ("uses", "active users"),
    height: int = 240,
) -> Markup:
    """Monthly columns of ``primary`` with a line of ``secondary`` on its own scale.

    Horizontal positions are percentages of the chart's width and vertical ones
    pixels, so the chart fills its card at any width without scaling its text.
    """
    if not labels:
        return Markup('<p class="empty">No history yet.</p>')
    top_pad, bottom = 12, 30
    plot_h = height - top_pad - bottom
    left, right = 11.0, 89.0  # the plot's edges, in % of the width: the scales sit outside
    max_a = _nice_max(max(primary, default=0))
    max_b = _nice_max(max(secondary, default=0))
    slot = (right - left) / len(labels)
    parts = [
        f'<svg class="chart" width="100%" height="{height}" role="img" '
        f'aria-label="{escape(names[0])} and {escape(names[1])} per month">'
    ]
    for tick in range(5):
        y = top_pad + plot_h - plot_h * tick / 4
        parts.append(
            f'<line x1="{left}%" x2="{right}%" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>'
            f'<text x="{left - 1.5}%" y="{y + 4:.1f}" text-anchor="end" fill="{MUTED}" '
            f'font-size="12">{_fmt(max_a * tick / 4)}</text>'
            f'<text x="{right + 1.5}%" y="{y + 4:.1f}" fill="{SECOND}" '
            f'font-size="12">{_fmt(max_b * tick / 4)}</text>'
        )
    points = []
    for i, label in enumerate(labels):
        cx = left + slot * i + slot / 2
        h = plot_h * primary[i] / max_a
        parts.append(
            f'<rect x="{cx - slot * 0.28:.2f}%" y="{top_pad + plot_h - h:.1f}" '
            f'width="{slot * 0.56:.2f}%" height="{h:.1f}" rx="3" fill="{ACCENT}" opacity="0.85">'
            f"<title>{escape(label)}: {primary[i]:,} {escape(names[0])}</title></rect>"
            f'<text x="{cx:.2f}%" y="{height - 10}" text-anchor="middle" fill="{INK}" '
            f'font-size="13">{escape(label)}</text>'
        )
        points.append((cx, top_pad + plot_h - plot_h * secondary[i] / max_b))
    # A polyline's points take no percentages: the line is drawn segment by segment.
    for (x1, y1), (x2, y2) in pairwise(points):
        parts.append(
            f'<line x1="{x1:.2f}%" y1="{y1:.1f}" x2="{x2:.2f}%" y2="{y2:.1f}" '
            f'stroke="{SECOND}" stroke-width="2.5" stroke-linecap="round"/>'
        )
    for (x, y), value, label in zip(points, secondary, labels, strict=True):
        parts.append(
            f'<circle cx="{x:.2f}%" cy="{y:.1f}" r="4" fill="#fff" stroke="{SECOND}" '
            f'stroke-width="2.5"><title>{escape(label)}: {value:,} {escape(names[1])}</title>'
            "</circle>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
