"""Kubernetes label selectors (matchLabels + matchExpressions), evaluated locally."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from carbontrack.core.errors import ConfigError

OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: frozenset[str]

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return labels.get(self.key) in self.values
        if self.operator == "NotIn":
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels  # DoesNotExist


@dataclass(frozen=True)
class LabelSelector:
    """Empty selector matches everything, as in Kubernetes."""

    match_labels: tuple[tuple[str, str], ...] = ()
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(labels.get(k) == v for k, v in self.match_labels) and all(
            r.matches(labels) for r in self.requirements
        )

    @classmethod
    def parse(cls, raw: object) -> LabelSelector:
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise ConfigError("invalid selector: expected matchLabels and/or matchExpressions")
        labels = raw.get("matchLabels") or {}
        if not isinstance(labels, Mapping):
            raise ConfigError("invalid selector.matchLabels: expected a map of label: value")
        requirements = []
        for expr in raw.get("matchExpressions") or []:
            if not isinstance(expr, Mapping):
                raise ConfigError("invalid selector.matchExpressions: expected key/operator items")
            op, key = expr.get("operator"), expr.get("key")
            values = expr.get("values") or []
            if op not in OPERATORS or not isinstance(key, str):
                raise ConfigError(
                    f"invalid selector expression {dict(expr)!r}: operator must be one of "
                    f"{', '.join(OPERATORS)} with a key"
                )
            if op in ("In", "NotIn") and not values:
                raise ConfigError("selector operators In and NotIn need at least one value")
            if op in ("Exists", "DoesNotExist") and values:
                raise ConfigError("selector operators Exists and DoesNotExist take no values")
            requirements.append(Requirement(key, str(op), frozenset(str(v) for v in values)))
        return cls(tuple(sorted((str(k), str(v)) for k, v in labels.items())), tuple(requirements))
