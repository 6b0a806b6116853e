"""GBNF for numbers between bounds: ``minimum``, ``maximum`` and their exclusive forms, by construction.

llama-cpp-python's JSON-Schema converter writes every integer as ``-? (0 | [1-9] [0-9]{0,15})`` whatever its
bounds, so a grammar-constrained model can still answer ``1000`` to ``"maximum": 999``. Here a range of
integers becomes the alternatives of its decimal strings, digit by digit (``[0, 1000]`` is
``[0-9] | [1-9] [0-9] | [1-9] [0-9]{2} | "1000"``), as llama.cpp's newer converter does.

Integers: every bound is exact. Numbers are written without an exponent, an integer part and an optional
fraction of up to 16 digits; integer-valued bounds are exact (``"exclusiveMinimum": 0`` admits ``0.5`` and
``3`` but not ``0`` nor ``0.0``), other bounds are rounded outward to integers (``"maximum": 2.5`` admits
``2.9`` in the grammar), and validation refuses what lies between. Integer parts have at most 16 digits, as
in the converter; a range with no integer in it raises :class:`ValueError` (the caller falls back).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

DIGITS = 16  # the converter's longest integer part
LIMIT = 10**DIGITS - 1
ANY_FRACTION = f'("." [0-9]{{1,{DIGITS}}})?'
ZERO_FRACTION = f'("." "0"{{1,{DIGITS}}})?'
NONZERO_FRACTION = f'"." [0-9]{{0,{DIGITS - 1}}} [1-9]'
BOUND_KEYWORDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


@dataclass(frozen=True, slots=True)
class Bound:
    value: float
    open: bool  # the bound itself is excluded


def _digit_class(first: str, last: str) -> str:
    return f"[{first}]" if first == last else f"[{first}-{last}]"


def _any_digits(count: int) -> str:
    return "[0-9]" if count == 1 else f"[0-9]{{{count}}}"


def _same_length(lo: str, hi: str) -> str:
    """The decimal strings of one length from ``lo`` to ``hi`` (``lo <= hi``, leading zeros kept)."""
    i = 0
    while i < len(lo) and lo[i] == hi[i]:
        i += 1
    if i == len(lo):
        return f'"{lo}"'
    head = f'"{lo[:i]}" ' if i else ""
    first, last, rest = lo[i], hi[i], len(lo) - i - 1
    if rest == 0:
        return head + _digit_class(first, last)
    low_rest, high_rest = lo[i + 1 :], hi[i + 1 :]
    low_full, high_full = low_rest == "0" * rest, high_rest == "9" * rest
    alternatives = []
    if not low_full:
        alternatives.append(f'"{first}" ({_same_length(low_rest, "9" * rest)})')
    middle_first = first if low_full else chr(ord(first) + 1)
    middle_last = last if high_full else chr(ord(last) - 1)
    if middle_first <= middle_last:
        alternatives.append(f"{_digit_class(middle_first, middle_last)} {_any_digits(rest)}")
    if not high_full:
        alternatives.append(f'"{last}" ({_same_length("0" * rest, high_rest)})')
    body = " | ".join(alternatives)
    return f"{head}({body})" if head or len(alternatives) > 1 else body


def natural_range(lo: int, hi: int) -> str:
    """GBNF for the integers ``lo..hi`` written without sign or leading zeros (``0 <= lo <= hi``)."""
    alternatives: list[str] = []
    full: list[int] = []  # lengths whose every number is in range: written together as one repetition
    for length in range(len(str(lo)), len(str(hi)) + 1):
        start = max(lo, 10 ** (length - 1) if length > 1 else 0)
        end = min(hi, 10**length - 1)
        if length > 1 and start == 10 ** (length - 1) and end == 10**length - 1:
            full.append(length)
            continue
        alternatives.append(_same_length(str(start), str(end)))
    if full:
        low, high = full[0] - 1, full[-1] - 1
        count = f"{{{low}}}" if low == high else f"{{{low},{high}}}"
        alternatives.append(f"[1-9] [0-9]{count}")
    return " | ".join(alternatives)


def integer_range(lo: int | None, hi: int | None) -> str:
    """GBNF for the JSON integers ``lo..hi`` (None: unbounded, up to 16 digits)."""
    low = -LIMIT if lo is None else max(lo, -LIMIT)
    high = LIMIT if hi is None else min(hi, LIMIT)
    if low > high:
        raise ValueError(f"no integer of at most {DIGITS} digits lies between the bounds")
    alternatives = []
    if low < 0:
        alternatives.append(f'"-" ({natural_range(max(1, -high), -low)})')
    if high >= 0:
        alternatives.append(natural_range(max(low, 0), high))
    return " | ".join(alternatives)


def _magnitudes(low: int, low_open: bool, high: int | None, high_open: bool) -> list[str]:
    """Unsigned decimals between ``low`` and ``high`` (integers, None: unbounded), bounds open or closed."""
    if high is not None and (low > high or (low == high and (low_open or high_open))):
        return []
    out = []
    if low_open:  # the integer part low, with a fraction that is not zero
        out.append(f"({natural_range(low, low)}) {NONZERO_FRACTION}")
        low += 1
    top = LIMIT if high is None else high - 1  # integer parts below high take any fraction
    if low <= top:
        out.append(f"({natural_range(low, top)}) {ANY_FRACTION}")
    if high is not None and not high_open and (low <= high):
        out.append(f"({natural_range(high, high)}) {ZERO_FRACTION}")
    return out


def number_range(lo: Bound | None, hi: Bound | None) -> str:
    """GBNF for JSON numbers between ``lo`` and ``hi`` (exact for integer-valued bounds; see module docs)."""
    low = None if lo is None else _outward(lo, math.floor)
    high = None if hi is None else _outward(hi, math.ceil)
    alternatives: list[str] = []
    if high is None or high.value > 0 or (high.value == 0 and not high.open):
        low_open = low is not None and low.value >= 0 and low.open
        start = 0 if low is None else max(int(low.value), 0)
        end = None if high is None else int(high.value)
        alternatives += _magnitudes(start, low_open, end, high is not None and high.open)
    if low is None or low.value < 0:
        # -x for x between max(-high, 0) and -low; 0 itself is written without the sign
        start = 0 if high is None else max(-int(high.value), 0)
        start_open = high is None or high.value >= 0 or high.open
        end = None if low is None else -int(low.value)
        negative = _magnitudes(start, start_open, end, low is not None and low.open)
        alternatives += [f'"-" {alt}' for alt in negative]
    if not alternatives:
        raise ValueError("no number lies between the bounds")
    return " | ".join(f"({alt})" for alt in alternatives)


def _outward(bound: Bound, to_int: Any) -> Bound:
    """An integer bound no tighter than ``bound`` (exact when it already is an integer), capped at 16 digits."""
    value = max(min(bound.value, LIMIT), -LIMIT)
    whole = int(to_int(value))
    return Bound(whole, bound.open and whole == value)


def bounds(schema: dict[str, Any]) -> tuple[Bound | None, Bound | None]:
    """The schema's lower and upper bound (draft 2020-12 numbers, or draft-04's boolean exclusive flags)."""
    lower = _bound(schema, "minimum", "exclusiveMinimum", max)
    upper = _bound(schema, "maximum", "exclusiveMaximum", min)
    return lower, upper


def _bound(schema: dict[str, Any], closed_key: str, open_key: str, tighter: Any) -> Bound | None:
    closed, open_ = schema.get(closed_key), schema.get(open_key)
    if isinstance(open_, bool):  # draft-04: the flag makes the closed bound open
        return None if closed is None else Bound(closed, open_)
    found = [Bound(closed, False)] if isinstance(closed, int | float) else []
    if isinstance(open_, int | float):
        found.append(Bound(open_, True))
    if not found:
        return None
    best = tighter(b.value for b in found)
    return Bound(best, any(b.open for b in found if b.value == best))


def integer_bounds(lower: Bound | None, upper: Bound | None) -> tuple[int | None, int | None]:
    """The closed integer range of an integer schema's bounds."""
    lo = None
    if lower is not None:
        lo = math.floor(lower.value) + 1 if lower.open else math.ceil(lower.value)
    hi = None
    if upper is not None:
        hi = math.ceil(upper.value) - 1 if upper.open else math.floor(upper.value)
    return lo, hi


def exact_for(schema: dict[str, Any]) -> bool:
    """Whether the grammar enforces the schema's bounds exactly (else validation finishes the job)."""
    if schema.get("type") == "integer":
        return True
    return all(
        isinstance(v, bool) or float(v).is_integer()
        for k in BOUND_KEYWORDS
        if isinstance(v := schema.get(k), int | float)
    )
