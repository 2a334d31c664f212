import pytest
from carbontrack.operator.selector import LabelSelector

from carbontrack.core.errors import ConfigError


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"team": "nlp", "tier": "train"}, True),
        ({"team": "nlp", "tier": "train", "preemptible": "yes"}, False),
        ({"team": "nlp", "tier": "eval"}, False),
        ({"team": "cv", "tier": "train"}, False),
        ({"tier": "train"}, False),
        ({"team": "nlp", "tier": "train", "stage": "dev"}, False),
        ({"team": "nlp", "tier": "train", "stage": "prod"}, True),
    ],
)
def test_selector_semantics(labels: dict[str, str], expected: bool) -> None:
    sel = LabelSelector.parse(
        {
            "matchLabels": {"team": "nlp"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["train", "finetune"]},
                {"key": "stage", "operator": "NotIn", "values": ["dev"]},
                {"key": "preemptible", "operator": "DoesNotExist"},
            ],
        }
    )
    assert sel.matches(labels) is expected


def test_empty_selector_matches_everything() -> None:
    assert LabelSelector.parse({}).matches({}) and LabelSelector.parse(None).matches({"a": "b"})


def test_exists() -> None:
    sel = LabelSelector.parse({"matchExpressions": [{"key": "gpu", "operator": "Exists"}]})
    assert sel.matches({"gpu": ""}) and not sel.matches({"cpu": "1"})


def test_bad_operator() -> None:
    with pytest.raises(ConfigError, match="operator must be one of In, NotIn, Exists, DoesNotExist"):
        LabelSelector.parse({"matchExpressions": [{"key": "a", "operator": "Gt"}]})
