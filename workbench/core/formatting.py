"""How numbers read on screen, the same in the CLI and the TUI."""

from __future__ import annotations

import math

SIGNIFICANT = 4
"""Significant digits a metric shows (AUC 0.8123, loss 0.0001234); whole numbers keep them all."""


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def metric(value: float | None) -> str:
    """A metric in plain digits, never `1.043e+04`: `10,432`, `0.8123`, `0.00001234`.

    From 1,000 up, whole units with thousands separators (a count of rows, an RMSE in
    dollars: the digits after the point are noise there); below, four significant digits,
    however small. Only the absurd (beyond a quadrillion, below a trillionth) keeps an exponent.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    value = float(value)
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    size = abs(value)
    if size == 0:
        return "0"
    if size >= 1e15 or size < 1e-12:
        return f"{value:.{SIGNIFICANT}g}"
    if size >= 1000:
        return f"{value:,.0f}"
    decimals = max(SIGNIFICANT - 1 - math.floor(math.log10(size)), 0)
    text = f"{value:.{decimals}f}"
    if abs(float(text)) >= 1000:  # 999.95 rounds up into the thousands
        return f"{value:,.0f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def signed(value: float | None) -> str:
    """A difference with its sign: `+0.008169`, `-1,204`, `±0`."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    text = metric(value)
    if text == "0":
        return "±0"
    return text if text.startswith("-") else f"+{text}"
