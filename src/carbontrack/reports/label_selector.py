"""Kubernetes label-selector strings (``kubectl -l``), matched locally against recorded labels.

The API server applies ``-l`` to live Jobs; report lines come from the operator's records,
whose labels are those the Job had when accounted, so the same selector is evaluated here.
Grammar as in k8s.io/apimachinery/pkg/labels: comma-separated requirements ``k=v``, ``k==v``,
``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k`` and ``!k``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from carbontrack.core.errors import ConfigError

Matcher = Callable[[Mapping[str, str]], bool]

_SET = re.compile(r"^\s*(\S+)\s+(in|notin)\s+\(([^()]*)\)\s*$")
_EQ = re.compile(r"^\s*([^!=\s]+)\s*(==|=|!=)\s*(\S*)\s*$")
_EXISTS = re.compile(r"^\s*(!?)\s*([^!=\s(),]+)\s*$")


def _split(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p for p in parts if p.strip()]


def _requirement(text: str) -> Matcher:
    m = _SET.match(text)
    if m:
        key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",") if v.strip()}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: key not in labels or labels[key] not in values
    m = _EQ.match(text)
    if m:
        key, op, value = m.group(1), m.group(2), m.group(3)
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    m = _EXISTS.match(text)
    if m:
        negate, key = m.group(1) == "!", m.group(2)
        return lambda labels: (key in labels) != negate
    raise ConfigError(f"invalid label selector requirement {text.strip()!r}: use k=v, k!=v, "
                      "k in (a,b), k notin (a,b), k or !k, separated by commas")


def parse_selector(text: str) -> Matcher:
    """A matcher for ``text`` (empty: everything). Raises ConfigError on bad syntax."""
    requirements = [_requirement(part) for part in _split(text or "")]
    return lambda labels: all(r(labels) for r in requirements)
