"""The text forms a setting takes, read once for the study file, the command line and the API.

A leaf beside :mod:`robustcli.config`: it imports nothing of ``robustcli`` but the error and the
wording of an option, so the settings never depend on a study or a rule (numpy is imported only
when a log-spaced range is read).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from robustcli.errors import InputError
from robustcli.wording import opt

__all__ = ["DEFAULT_DELTA", "MOST_SIZES", "parse_delta", "parse_pairs", "parse_sizes"]

#: the most training-sample sizes of one study (the paper's grid has 45)
MOST_SIZES = 1000

_RANGE = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*:\s*(\d+)\s*$")

#: the race's default indifference zone: 1 % of the leader's mean loss (see :func:`parse_delta`)
DEFAULT_DELTA = "1%"


def parse_sizes(text: str) -> list[int]:
    """``"50,100,200"`` (a list) or ``"100:32000:45"`` (45 sizes log-spaced from 100 to 32,000,
    rounded; the paper's grid) -> sorted distinct sizes. Bad text raises InputError."""
    text = (text or "").strip()
    hint = "give a list like 50,100,200 or a log-spaced range START:STOP:COUNT like 100:32000:45"
    match = _RANGE.match(text)
    if match:
        start, stop, count = (int(g) for g in match.groups())
        if start < 1 or stop < start or count < 2:
            raise InputError(f"{opt('sizes', text, quoted=True)}: a range needs 1 <= START <= STOP and COUNT >= 2 ({hint})")
        if count > MOST_SIZES:
            raise InputError(f"{opt('sizes', text, quoted=True)}: COUNT {count:,} exceeds {MOST_SIZES:,} sizes ({hint})")
        import numpy as np

        return sorted({int(round(x)) for x in np.geomspace(start, stop, count)})
    if ":" in text:
        raise InputError(f"{opt('sizes', text, quoted=True)}: {hint}")
    sizes = []
    for part in text.split(","):
        part = part.strip()
        if not (part.isascii() and part.isdigit()) or int(part) < 1:  # '²'.isdigit() holds, int('²') fails
            raise InputError(f"{opt('sizes', text, quoted=True)}: {part!r} is not a positive whole number ({hint})")
        sizes.append(int(part))
    if len(set(sizes)) > MOST_SIZES:
        raise InputError(f"{opt('sizes')}: {len(set(sizes)):,} sizes exceed the {MOST_SIZES:,} a study takes")
    return sorted(set(sizes))


def parse_delta(value: float | str) -> tuple[float, bool]:
    """``(amount, relative)`` of an indifference zone: ``"1%"`` is 0.01 of the leader's mean loss
    (relative), a plain number (``0.005``, ``"0.005"``) is in loss units (absolute)."""
    text = str(value).strip()
    relative = text.endswith("%")
    try:
        amount = float(text[:-1] if relative else text)
    except ValueError:
        raise InputError(f"--delta {value!r}: expected a loss difference (0.005) or a share of the leader's mean (1%)") from None
    if not math.isfinite(amount) or amount <= 0:
        raise InputError(f"--delta {value!r}: must be a positive finite number")
    return (amount / 100.0, True) if relative else (amount, False)


def parse_pairs(pairs: list[str] | None, option: str = "--task-option") -> dict[str, Any] | None:
    """``["dataset=B", "events=5000"]`` -> ``{"dataset": "B", "events": 5000}`` (JSON values where they
    parse); ``option`` names the option in the error line. None when nothing was given."""
    if not pairs:
        return None
    out: dict[str, Any] = {}
    given: dict[str, str] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError(f"{option} expects KEY=VALUE, got {pair!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if key in out and out[key] != value:  # one would silently win: refused, both named
            raise InputError(f"{option} {given[key]} and {option} {pair} give {key!r} two values; give one")
        out[key], given[key] = value, pair
    return out
