"""Charts drawn on the server as SVG: line charts with an optional band and threshold, and
sparklines. Every label is escaped; every chart has an accessible name and a text summary."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from markupsafe import Markup, escape

WIDTH, HEIGHT = 520, 160
PAD_L, PAD_R, PAD_T, PAD_B = 48, 10, 10, 32


@dataclass
class Line:
    name: str
    values: Sequence[float | None]
    band: Sequence[tuple[float | None, float | None]] = field(default_factory=tuple)
    """A lower and upper bound per point (an interval around the line), or none."""


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000 or abs(v) < 0.01:
        return f"{v:.2g}"
    return f"{v:.3g}"


def _finite(values: Sequence[float | None]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def line_chart(
    label: str,
    lines: Sequence[Line],
    *,
    threshold: float | None = None,
    threshold_name: str = "threshold",
    log: bool = False,
    unit: str = "",
    span: tuple[str, str] | None = None,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> Markup:
    """Lines over equally spaced points (oldest left), on a shared y axis; with `log`, a
    base-10 axis (values at or below zero are left out); `span` names the first and the last
    point's times under the axis."""

    def tr(v: float | None) -> float | None:
        if v is None or not math.isfinite(v):
            return None
        if log:
            return math.log10(v) if v > 0 else None
        return v

    ys = [tr(v) for line in lines for v in line.values]
    ys += [tr(b) for line in lines for pair in line.band for b in pair]
    if threshold is not None:
        ys.append(tr(threshold))
    seen = [y for y in ys if y is not None]
    lo, hi = (min(seen), max(seen)) if seen else (0.0, 1.0)
    if not log:
        lo = min(lo, 0.0)
    if hi - lo < 1e-12:
        hi, lo = hi + 1.0, lo - (0.0 if not log else 1.0)
    n = max((len(line.values) for line in lines), default=0)
    inner_w, inner_h = width - PAD_L - PAD_R, height - PAD_T - PAD_B

    def x(i: int) -> float:
        return PAD_L + (inner_w * i / (n - 1) if n > 1 else inner_w / 2)

    def y(v: float) -> float:
        return PAD_T + inner_h * (1 - (v - lo) / (hi - lo))

    def shown(v: float) -> str:
        return _fmt(10**v if log else v) + unit

    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(label)}"><title>{escape(label)}</title>',
        f'<line class="axis" x1="{PAD_L}" y1="{PAD_T + inner_h}" x2="{width - PAD_R}" '
        f'y2="{PAD_T + inner_h}"/>',
        f'<text class="tick" x="{PAD_L - 4}" y="{PAD_T + 8}" text-anchor="end">{shown(hi)}</text>',
        f'<text class="tick" x="{PAD_L - 4}" y="{PAD_T + inner_h}" text-anchor="end">'
        f"{shown(lo)}</text>",
    ]
    for k, line in enumerate(lines):
        band = [(i, tr(a), tr(b)) for i, (a, b) in enumerate(line.band)]
        band = [(i, a, b) for i, a, b in band if a is not None and b is not None]
        if len(band) > 1:
            top = " ".join(f"{x(i):.1f},{y(b):.1f}" for i, _, b in band if b is not None)
            bottom = " ".join(
                f"{x(i):.1f},{y(a):.1f}" for i, a, _ in reversed(band) if a is not None
            )
            parts.append(f'<polygon class="band s{k % 6}" points="{top} {bottom}"/>')
        segment: list[str] = []
        for i, v in enumerate(line.values):
            t = tr(v)
            if t is None:
                if len(segment) > 1:
                    parts.append(f'<polyline class="line s{k % 6}" points="{" ".join(segment)}"/>')
                segment = []
                continue
            segment.append(f"{x(i):.1f},{y(t):.1f}")
        if len(segment) > 1:
            parts.append(f'<polyline class="line s{k % 6}" points="{" ".join(segment)}"/>')
        elif len(segment) == 1:
            cx, cy = segment[0].split(",")
            parts.append(f'<circle class="dot s{k % 6}" cx="{cx}" cy="{cy}" r="2.5"/>')
    t = tr(threshold) if threshold is not None else None
    if t is not None:
        parts.append(
            f'<line class="threshold" x1="{PAD_L}" y1="{y(t):.1f}" x2="{width - PAD_R}" '
            f'y2="{y(t):.1f}"/><text class="tick" x="{width - PAD_R}" y="{y(t) - 3:.1f}" '
            f'text-anchor="end">{escape(threshold_name)} {shown(t)}</text>'
        )
    legend_x = PAD_L
    for k, line in enumerate(lines):
        name = escape(line.name)
        parts.append(f'<text class="legend s{k % 6}" x="{legend_x}" y="{height - 6}">{name}</text>')
        legend_x += 14 + 7 * len(line.name)
    if span is not None:
        parts.append(
            f'<text class="tick" x="{PAD_L}" y="{PAD_T + inner_h + 10}">{escape(span[0])}</text>'
            f'<text class="tick" x="{width - PAD_R}" y="{PAD_T + inner_h + 10}" '
            f'text-anchor="end">{escape(span[1])}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def sparkline(
    label: str, values: Sequence[float | None], width: int = 110, height: int = 26
) -> Markup:
    finite = _finite(values)
    top = max(finite, default=0.0) or 1.0
    n = len(values)
    points = [
        f"{(width - 2) * i / max(1, n - 1) + 1:.1f},{height - 2 - (height - 4) * v / top:.1f}"
        for i, v in enumerate(values)
        if v is not None and math.isfinite(v)
    ]
    body = f'<polyline class="line s0" points="{" ".join(points)}"/>' if len(points) > 1 else ""
    return Markup(
        f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(label)}"><title>{escape(label)}</title>{body}</svg>'
    )
