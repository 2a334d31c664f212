"""Label-selector strings as kubectl -l takes them, evaluated on recorded labels."""

from __future__ import annotations

import pytest

from carbontrack.core.errors import ConfigError
from carbontrack.reports.label_selector import parse_selector

LABELS = {"team": "nlp", "tier": "prod", "carbontrack.io/model": "bert"}


@pytest.mark.parametrize(("selector", "expected"), [
    ("", True),
    ("team=nlp", True),
    ("team==nlp", True),
    ("team=cv", False),
    ("team!=cv", True),
    ("team!=nlp", False),
    ("absent!=x", True),
    ("team in (cv, nlp)", True),
    ("team in (cv)", False),
    ("team notin (cv,x)", True),
    ("team notin (nlp)", False),
    ("absent notin (x)", True),
    ("carbontrack.io/model", True),
    ("!carbontrack.io/model", False),
    ("!absent", True),
    ("team=nlp,tier in (prod,dev),!absent", True),
    ("team=nlp,tier=dev", False),
])
def test_selector_matches_like_the_api_server(selector: str, expected: bool) -> None:
    assert parse_selector(selector)(LABELS) is expected


@pytest.mark.parametrize("bad", ["team in nlp", "=x", "team in (a", "a b c"])
def test_bad_selector_is_a_clear_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="invalid label selector requirement"):
        parse_selector(bad)
