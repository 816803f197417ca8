"""Portal template filters: money, durations, and the icon sprite."""

from __future__ import annotations

import json
import math
from decimal import Decimal, InvalidOperation

from django import template
from django.utils.html import format_html

register = template.Library()


def money_text(value, currency: str = "$") -> str:
    """An amount as money: cents with thousands separators, and sub-cent amounts with two
    significant digits (so a $0.0017 cost never reads as $0.00 beside a table that says $0.0017)."""
    if value is None or value == "":
        return "—"
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    if amount == 0 or amount >= Decimal("0.01"):
        return f"{sign}{currency}{amount:,.2f}"
    places = min(6, 1 - math.floor(math.log10(float(amount))))
    return f"{sign}{currency}{amount:.{places}f}"


@register.filter
def money(value) -> str:
    return money_text(value)


@register.filter
def duration_ms(value) -> str:
    """Milliseconds as the two largest units a reader needs: 850 ms, 12 s, 3 min 20 s, 2 h 5 min,
    4 d 3 h."""
    try:
        ms = int(value)
    except (TypeError, ValueError):
        return "—"
    if ms < 1000:
        return f"{max(ms, 0)} ms"
    seconds = ms // 1000
    units = [("d", 86400), ("h", 3600), ("min", 60), ("s", 1)]
    parts = []
    for name, size in units:
        if seconds >= size or parts:
            parts.append(f"{seconds // size} {name}")
            seconds %= size
        if len(parts) == 2:
            break
    if len(parts) == 2 and parts[1].startswith("0 "):
        parts.pop()
    return " ".join(parts)


@register.simple_tag
def icon(name: str, label: str = "") -> str:
    """An icon from the sprite in static/web/icons.svg; decorative unless a label is given."""
    from django.templatetags.static import static

    href = static("web/icons.svg") + "#" + name
    if label:
        return format_html(
            '<svg class="icon" role="img" aria-label="{}"><use href="{}"></use></svg>', label, href
        )
    return format_html(
        '<svg class="icon" aria-hidden="true" focusable="false"><use href="{}"></use></svg>', href
    )


@register.filter
def oneline(text: str) -> str:
    """A message body on one line for the compact row: JSON re-serialized without its indentation,
    other text with its line breaks shown as ⏎."""
    try:
        return json.dumps(json.loads(text), ensure_ascii=False)
    except (TypeError, ValueError):
        return str(text).replace("\r\n", "⏎").replace("\n", "⏎")
