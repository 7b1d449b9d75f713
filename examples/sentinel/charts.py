"""Charts as inline SVG, drawn on the server: no JavaScript, no build step.

Each function returns markup ready for a template (``{{ chart }}``); every text
that comes from data is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup
from markupsafe import escape

__all__ = ["Bar", "bars", "meter", "sparkline", "trend"]

INK = "#1f2937"
MUTED = "#6b7280"
GRID = "#e5e7eb"
ACCENT = "#4f46e5"
SECOND = "#0d9488"
WARN = "#d97706"
DANGER = "#dc2626"


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


def bars(rows: Sequence[Bar], *, width: int = 640, row_height: int = 30) -> Markup:
    """Horizontal bars, one per row, longest first, each with its value."""
    if not rows:
        return Markup('<p class="empty">No usage recorded yet this month.</p>')
    label_w, value_w = 190, 110
    plot_w = width - label_w - value_w
    top = max(r.value for r in rows) or 1
    height = row_height * len(rows)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="usage per feature">'
    ]
    for i, row in enumerate(rows):
        y = i * row_height
        w = max(2.0, plot_w * row.value / top)
        parts.append(
            f'<text x="{label_w - 10}" y="{y + 19}" text-anchor="end" fill="{INK}" '
            f'font-size="13">{escape(row.label)}</text>'
            f'<rect x="{label_w}" y="{y + 6}" width="{plot_w}" height="18" rx="4" fill="#f3f4f6"/>'
            f'<rect x="{label_w}" y="{y + 6}" width="{w:.1f}" height="18" rx="4" fill="{ACCENT}">'
            f"<title>{escape(row.label)}: {row.value:,}</title></rect>"
            f'<text x="{label_w + plot_w + 10}" y="{y + 19}" fill="{INK}" font-size="13" '
            f'font-weight="600">{_fmt(row.value)}'
            f'<tspan fill="{MUTED}" font-weight="400"> {escape(row.note)}</tspan></text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def meter(used: int, limit: int, *, width: int = 220) -> Markup:
    """A progress bar of ``used`` out of ``limit``: amber from 80 %, red at the limit."""
    share = min(1.0, used / limit) if limit else 1.0
    colour = DANGER if share >= 1 else WARN if share >= 0.8 else SECOND
    return Markup(
        f'<svg class="meter" viewBox="0 0 {width} 12" width="{width}" height="12" role="img" '
        f'aria-label="{used} of {limit}">'
        f'<rect width="{width}" height="12" rx="6" fill="#eef2f7"/>'
        f'<rect width="{max(6.0, width * share):.1f}" height="12" rx="6" fill="{colour}"/>'
        "</svg>"
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
    width: int = 560,
    height: int = 250,
) -> Markup:
    """Monthly columns of ``primary`` with a line of ``secondary`` on its own scale."""
    if not labels:
        return Markup('<p class="empty">No history yet.</p>')
    left, right, top_pad, bottom = 48, 48, 16, 34
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    max_a = _nice_max(max(primary, default=0))
    max_b = _nice_max(max(secondary, default=0))
    slot = plot_w / len(labels)
    col_w = min(46.0, slot * 0.56)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(names[0])} and {escape(names[1])} per month">'
    ]
    for tick in range(5):
        value = max_a * tick / 4
        y = top_pad + plot_h - plot_h * tick / 4
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>'
            f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end" fill="{MUTED}" '
            f'font-size="12">{_fmt(value)}</text>'
            f'<text x="{left + plot_w + 8}" y="{y + 4:.1f}" fill="{SECOND}" '
            f'font-size="12">{_fmt(max_b * tick / 4)}</text>'
        )
    points = []
    for i, label in enumerate(labels):
        cx = left + slot * i + slot / 2
        h = plot_h * primary[i] / max_a
        parts.append(
            f'<rect x="{cx - col_w / 2:.1f}" y="{top_pad + plot_h - h:.1f}" width="{col_w:.1f}" '
            f'height="{h:.1f}" rx="3" fill="{ACCENT}" opacity="0.85">'
            f"<title>{escape(label)}: {primary[i]:,} {escape(names[0])}</title></rect>"
            f'<text x="{cx:.1f}" y="{height - 12}" text-anchor="middle" fill="{INK}" '
            f'font-size="13">{escape(label)}</text>'
        )
        points.append((cx, top_pad + plot_h - plot_h * secondary[i] / max_b))
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    parts.append(
        f'<polyline points="{path}" fill="none" stroke="{SECOND}" stroke-width="2.5" '
        'stroke-linejoin="round"/>'
    )
    for (x, y), value, label in zip(points, secondary, labels, strict=True):
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="#fff" stroke="{SECOND}" '
            f'stroke-width="2.5"><title>{escape(label)}: {value:,} {escape(names[1])}</title>'
            "</circle>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
