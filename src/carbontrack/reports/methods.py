"""One representation of a line's energy method, from every source to every document.

The sources write a Job's methods in different forms: the operator joins them with ``+``
(``estimated+measured``), older reports wrote ``mixed(estimated,measured)``, a tracker run
has one word. ``parse`` reads all of them into a set of method words; ``canonical`` writes
the one form every line carries (sorted, ``+``-joined, as the operator does); ``kind``
says what a reader needs: measured, partly estimated or estimated.

``sampled`` (power read from the hardware and integrated over time, docs/sources.md) is a
reading of the device, not a model, so it counts as measured here; ``estimated`` (a model
from utilisation) and anything unknown count as estimated.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MEASURED = "measured"
PARTLY_ESTIMATED = "partly estimated"
ESTIMATED = "estimated"
# method words that are readings of the hardware (Method enum in core.types)
READ_FROM_HARDWARE = frozenset({"measured", "sampled"})
# "none" is the operator's word for a Job without energy data: no method contributed
NO_METHOD = frozenset({"", "none", "unknown"})

_MIXED = re.compile(r"^\s*mixed\s*\((.*)\)\s*$", re.IGNORECASE)


def parse(text: str) -> frozenset[str]:
    """Method words of ``text`` (lower case); empty for an unknown/empty method."""
    inner = _MIXED.match(text)
    body = inner.group(1) if inner else text
    words = {w.strip().lower() for w in re.split(r"[+,]", body)}
    return frozenset(words - NO_METHOD)


def canonical(methods: Iterable[str]) -> str:
    """The one written form: sorted words joined with ``+`` ("" when none)."""
    return "+".join(sorted({w for m in methods for w in parse(m)}))


def kind(methods: Iterable[str]) -> str:
    """measured (all hardware readings), partly estimated, or estimated.

    A method that is not recorded counts as not measured: claiming "measured" needs
    every contribution to say so."""
    words = {w for m in methods for w in (parse(m) or {"unknown"})}
    if not words:  # nothing to judge: never claim a measurement
        return ESTIMATED
    read = words & READ_FROM_HARDWARE
    if read == words:
        return MEASURED
    return PARTLY_ESTIMATED if read else ESTIMATED
