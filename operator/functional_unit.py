"""The functional unit of a long-running workload (SCI's R): a counter the workload's owner
names in annotations, e.g.

    carbontrack.io/functional-unit: token
    carbontrack.io/functional-unit-query: 'vllm:generation_tokens_total{model_name="llama"}'

The query is user input, so it is never PromQL run as written: it must be one counter
selector (metric name plus optional label matchers, no functions or operators) and the
operator adds ``namespace="<the workload's namespace>"`` to it. A ``namespace`` matcher
naming anything else, or a ``__name__`` matcher, is refused: the expression cannot read
another namespace's series. It decides only the unit count of a slice, never what CO2e is
counted. Units in a slice are the counters' increase over the slice, series by series
(last value at the end minus last value at the start, a counter reset restarting from 0):
no extrapolation, so slices add up to the whole span.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from carbontrack.core import contract
from carbontrack.core.slices import NO_UNIT

from .promql import escape_label, range_seconds

UNIT = contract.FUNCTIONAL_UNIT
QUERY = contract.FUNCTIONAL_UNIT_QUERY
METRIC = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
MATCH_OPS = ("=~", "!~", "!=", "=")
MAX_QUERY_CHARS = 512
UNIT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._/-]{0,62}")


class FunctionalUnitError(ValueError):
    """The annotation cannot be used; the message says what to write instead."""


@dataclass(frozen=True)
class FunctionalUnit:
    unit: str
    metric: str
    matchers: tuple[tuple[str, str, str], ...]  # (label, op, value), the user's own

    def selector(self, namespace: str, narrow: str = "") -> str:
        """The counter selector with the workload's namespace forced in (``narrow``: the
        operator's own extra matchers, already escaped)."""
        parts = [f'namespace="{escape_label(namespace)}"']
        parts += [f'{k}{op}"{escape_label(v)}"' for k, op, v in self.matchers]
        parts += [narrow] if narrow else []
        return f"{self.metric}{{{','.join(parts)}}}"

    def at_end(self, namespace: str, slice_s: float) -> str:
        """Last value of each series within the slice (evaluate at the slice end)."""
        return f"last_over_time({self.selector(namespace)}[{range_seconds(slice_s)}])"

    def at_start(self, namespace: str, lookback_s: float, narrow: str = "") -> str:
        """Last value of each series before the slice (evaluate at the slice start)."""
        return f"last_over_time({self.selector(namespace, narrow)}[{range_seconds(lookback_s)}])"


def from_annotations(annotations: Mapping[str, str], namespace: str) -> FunctionalUnit | None:
    """None when no query is set; FunctionalUnitError when it cannot be used."""
    query = annotations.get(QUERY)
    if query is None:
        return None
    unit = annotations.get(UNIT, "unit").strip() or "unit"
    if not UNIT_NAME.fullmatch(unit):
        raise FunctionalUnitError(
            f"{UNIT} {unit[:40]!r} is not a unit name: use letters, digits, spaces and ._/- "
            "(at most 63 characters), e.g. 'token' or 'request'")
    if unit.lower() == NO_UNIT:
        raise FunctionalUnitError(
            f"{UNIT} {unit!r} is reserved: reports read it as a slice without unit data; name "
            "what the counter counts, e.g. 'token' or 'request'")
    metric, matchers = parse_selector(query)
    for label, op, value in matchers:
        if label == "__name__":
            raise FunctionalUnitError(f"{QUERY}: name the metric before the braces, not with __name__")
        if label == "namespace" and not (op == "=" and value == namespace):
            raise FunctionalUnitError(
                f"{QUERY}: a namespace matcher other than namespace=\"{namespace}\" is refused; "
                "the operator reads only the workload's own namespace")
    return FunctionalUnit(unit, metric, tuple(m for m in matchers if m[0] != "namespace"))


def parse_selector(text: str) -> tuple[str, list[tuple[str, str, str]]]:
    """``metric{label op "value", ...}`` -> (metric, matchers); anything else raises
    FunctionalUnitError saying what is accepted."""
    hint = ("use one counter selector such as vllm:generation_tokens_total{model_name=\"m\"} "
            "(no functions, operators or ranges)")
    if len(text) > MAX_QUERY_CHARS:
        raise FunctionalUnitError(f"{QUERY} is longer than {MAX_QUERY_CHARS} characters; {hint}")
    s = text.strip()
    m = METRIC.match(s)
    if not m:
        raise FunctionalUnitError(f"{QUERY} {text[:60]!r} does not start with a metric name; {hint}")
    metric, pos = m.group(), m.end()
    matchers: list[tuple[str, str, str]] = []
    if pos == len(s):
        return metric, matchers
    if s[pos] != "{" or not s.endswith("}"):
        raise FunctionalUnitError(f"{QUERY} {text[:60]!r}: {hint}")
    pos += 1
    while True:
        pos = _skip_space(s, pos)
        if s[pos] == "}" and pos == len(s) - 1:
            return metric, matchers
        lm = LABEL.match(s, pos)
        if not lm:
            raise FunctionalUnitError(f"{QUERY}: expected a label name at character {pos}; {hint}")
        pos = _skip_space(s, lm.end())
        op = next((o for o in MATCH_OPS if s.startswith(o, pos)), None)
        if op is None:
            raise FunctionalUnitError(f"{QUERY}: expected =, !=, =~ or !~ at character {pos}; {hint}")
        pos = _skip_space(s, pos + len(op))
        value, pos = _string(s, pos)
        matchers.append((lm.group(), op, value))
        pos = _skip_space(s, pos)
        if s[pos] == ",":
            pos += 1
        elif not (s[pos] == "}" and pos == len(s) - 1):
            raise FunctionalUnitError(f"{QUERY}: expected ',' or '}}' at character {pos}; {hint}")


def _skip_space(s: str, pos: int) -> int:
    while pos < len(s) and s[pos] in " \t":
        pos += 1
    if pos >= len(s):
        raise FunctionalUnitError(f"{QUERY}: the selector ends early (missing '}}')")
    return pos


def _string(s: str, pos: int) -> tuple[str, int]:
    if s[pos] != '"':
        raise FunctionalUnitError(f"{QUERY}: expected a double-quoted value at character {pos}")
    out: list[str] = []
    pos += 1
    escapes = {"\\": "\\", '"': '"', "n": "\n"}
    while pos < len(s):
        c = s[pos]
        if c == '"':
            return "".join(out), pos + 1
        if c == "\\":
            nxt = s[pos + 1] if pos + 1 < len(s) else ""
            if nxt not in escapes:
                raise FunctionalUnitError(f"{QUERY}: unsupported escape at character {pos}")
            out.append(escapes[nxt])
            pos += 2
            continue
        out.append(c)
        pos += 1
    raise FunctionalUnitError(f"{QUERY}: unterminated string")


def increase(at_end: Sequence[tuple[Mapping[str, str], float]],
             at_start: Sequence[tuple[Mapping[str, str], float]]) -> float:
    """Sum over series of (value at the end - value at the start); a series absent at the
    start counts from 0, and one whose value fell (the counter restarted with its pod)
    counts its value at the end."""
    before = {frozenset(labels.items()): value for labels, value in at_start}
    total = 0.0
    for labels, value in at_end:
        prior = before.get(frozenset(labels.items()), 0.0)
        total += value - prior if value >= prior else value
    return total
