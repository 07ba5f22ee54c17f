"""Bar charts as SVG markup (pure: data in, a string out; no Flask, no database).

The page puts the markup inline: the Content-Security-Policy forbids inline scripts and
styles, not inline SVG, so the chart has no ``style`` attribute or element — its look comes
from classes styled in ``app.css`` (``.chart``, ``.chart-bar``, ``.chart-grid``...). Every text
is escaped and stripped of characters XML does not allow, so the result is well-formed XML
whatever the labels hold. The chart is an image (``role="img"``) named by its ``<title>`` and
described by its ``<desc>``; each bar carries its own ``<title>`` (a tooltip, and read out by
screen readers). The page shows the same numbers in a table under the chart.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence

# Characters XML 1.0 forbids (control characters, lone surrogates, U+FFFE/U+FFFF).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ID = re.compile(r"[^A-Za-z0-9_-]")

LEFT, RIGHT, TOP, BOTTOM = 52, 24, 12, 30
MAX_X_LABELS = 12


def escape(value: object) -> str:
    """Text safe inside an XML element or a quoted attribute."""
    return html.escape(_NOT_XML.sub("", str(value)), quote=True)


def nice_step(largest: int, ticks: int = 4) -> int:
    """A round step (1, 2 or 5 times a power of ten) giving about ``ticks`` gridlines."""
    if largest <= ticks:
        return 1
    raw = largest / ticks
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if factor * power >= raw:
            return int(factor * power)
    return int(10 * power)  # pragma: no cover - the loop always returns


def _number(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def bar_chart(
    chart_id: str,
    title: str,
    description: str,
    bars: Sequence[tuple[str, int]],
    *,
    width: int = 720,
    height: int = 220,
    bar_class: str = "chart-bar",
    empty_text: str = "",
    value_text: str = "{label}: {value}",
) -> str:
    """A vertical bar chart of ``(label, value)`` pairs (values >= 0) as an ``<svg>`` string.

    ``chart_id`` prefixes the ids of ``<title>`` and ``<desc>`` (so several charts can share
    a page); ``value_text`` is the per-bar tooltip, formatted with ``label`` and ``value``.
    """
    chart_id = _ID.sub("", chart_id) or "chart"
    bar_class = _ID.sub("", bar_class) or "chart-bar"
    values = [max(int(value), 0) for _, value in bars]
    largest = max(values, default=0)
    step = nice_step(largest)
    top_value = max(step * math.ceil(largest / step), step)
    plot_width = width - LEFT - RIGHT
    plot_height = height - TOP - BOTTOM
    base = TOP + plot_height

    def y(value: float) -> float:
        return base - plot_height * value / top_value

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
        f'role="img" aria-labelledby="{chart_id}-title {chart_id}-desc" focusable="false">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
        f'<desc id="{chart_id}-desc">{escape(description)}</desc>',
    ]
    for tick in range(0, top_value + 1, step):
        ty = _number(y(tick))
        out.append(
            f'<line class="chart-grid" x1="{LEFT}" y1="{ty}" x2="{width - RIGHT}" y2="{ty}"/>'
        )
        out.append(
            f'<text class="chart-label chart-label-y" x="{LEFT - 6}" y="{ty}" dy="0.35em">'
            f"{tick:,}</text>"
        )
    if not bars:
        if empty_text:
            out.append(
                f'<text class="chart-label chart-label-x" x="{_number(LEFT + plot_width / 2)}" '
                f'y="{_number(TOP + plot_height / 2)}">{escape(empty_text)}</text>'
            )
    else:
        slot = plot_width / len(bars)
        bar_width = max(slot * 0.75, 1.0)
        every = max(math.ceil(len(bars) / MAX_X_LABELS), 1)
        for index, ((label, _), value) in enumerate(zip(bars, values, strict=True)):
            x = LEFT + slot * index + (slot - bar_width) / 2
            top = y(value)
            tip = escape(value_text.format(label=label, value=f"{value:,}"))
            out.append(
                f'<rect class="{bar_class}" x="{_number(x)}" y="{_number(top)}" '
                f'width="{_number(bar_width)}" height="{_number(base - top)}">'
                f"<title>{tip}</title></rect>"
            )
            if index % every == 0:
                out.append(
                    f'<text class="chart-label chart-label-x" '
                    f'x="{_number(LEFT + slot * index + slot / 2)}" y="{base + 18}">'
                    f"{escape(label)}</text>"
                )
    out.append(
        f'<line class="chart-axis" x1="{LEFT}" y1="{base}" x2="{width - RIGHT}" y2="{base}"/>'
    )
    out.append("</svg>")
    return "\n".join(out)
