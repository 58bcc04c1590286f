"""The one way this package writes a markdown table cell: the model card, report.md and the evaluation tables."""

from __future__ import annotations

import json
from typing import Any


def cell(value: Any) -> str:
    """One markdown table cell: losses to 4 decimals, 4 significant digits past 1000 and 3 below 0.01 (a learning
    rate of 1.5e-4 reads 0.00015, an epsilon 1e-08, never 0.0000), thousands separators for counts from 10,000,
    lists and dicts as JSON, nothing for None, and pipes escaped so a value cannot split the row."""
    if value is None:
        return ""
    if isinstance(value, float):
        if value != 0 and abs(value) < 0.01:
            return f"{value:.3g}"
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000:
        return f"{value:,}"
    text = json.dumps(value) if isinstance(value, list | dict) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def setting(value: Any) -> str:
    """A setting as it was set, for the card's recipe table: the shortest form that reads back as the same number
    (0.1, 3, 1.5e-04 as 0.00015, 1e-08), not a loss's four decimals (0.1000, 3.0000)."""
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    return cell(value)
