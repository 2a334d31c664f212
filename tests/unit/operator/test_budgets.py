from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from carbontrack.operator.budgets import BudgetSpec, compute_status, parse_spec
from carbontrack.operator.ledger import Ledger, LedgerEntry
from carbontrack.operator.period import CalendarPeriod
from carbontrack.operator.selector import LabelSelector

from carbontrack.core.errors import ConfigError

CASES = yaml.safe_load((Path(__file__).parent / "invalid_carbonbudgets.yaml").read_text())
NOW = datetime(2026, 3, 15, 12, tzinfo=timezone.utc)


def spec(limit: str = "1kg", thresholds: tuple[int, ...] = (50, 80), action: str = "Warn") -> BudgetSpec:
    return parse_spec(
        {
            "limit": limit,
            "period": {"type": "Calendar", "calendar": "Month", "timeZone": "UTC"},
            "selector": {"matchLabels": {"team": "nlp"}},
            "thresholds": list(thresholds),
            "action": action,
        }
    )


def ledger(*grams: float, finished: datetime = NOW) -> Ledger:
    return Ledger(
        LedgerEntry(f"uid-{i}", f"job-{i}", finished - timedelta(minutes=i), finished, g, g / 300)
        for i, g in enumerate(grams)
    )


@pytest.mark.parametrize("case", CASES, ids=[c["case"] for c in CASES])
def test_operator_rejects_every_spec_the_api_server_rejects(case: dict[str, object]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_spec(case["spec"])  # type: ignore[arg-type]
    assert str(case["operator"]) in str(info.value)


def test_at_least_ten_invalid_cases() -> None:
    assert len(CASES) >= 10


def test_parse_full_spec() -> None:
    s = spec("250kg", (80, 50), "Suspend")
    assert s.limit_grams == 250_000.0
    assert s.thresholds == (50, 80)
    assert s.action == "Suspend"
    assert s.period == CalendarPeriod("Month", ZoneInfo("UTC"))
    assert s.selector.matches({"team": "nlp", "x": "y"})
    assert not s.selector.matches({"team": "cv"})


def test_defaults() -> None:
    s = parse_spec({"limit": "1t", "period": {"type": "Rolling", "window": "7d"}, "selector": {}})
    assert (s.action, s.thresholds) == ("Warn", (50, 80))
    assert s.selector == LabelSelector()


def test_status_is_derived_from_the_ledger() -> None:
    update = compute_status(spec("1kg"), ledger(100.0, 150.0), {}, NOW)
    st = update.status
    assert st["usedGrams"] == 250.0
    assert st["used"] == "250g"
    assert st["remainingGrams"] == 750.0
    assert st["percent"] == 25.0
    assert st["jobsCounted"] == 2
    assert st["exceeded"] is False
    assert st["periodName"] == "2026-03"
    assert (st["periodStart"], st["periodEnd"]) == ("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z")
    assert update.notifications == []


def test_recomputing_is_idempotent() -> None:
    first = compute_status(spec("1kg"), ledger(600.0), {}, NOW)
    second = compute_status(spec("1kg"), ledger(600.0), first.status, NOW)
    assert [n.reason for n in first.notifications] == ["ThresholdCrossed"]
    assert second.notifications == []
    assert second.status == first.status


def test_each_threshold_fires_once_then_exceeded() -> None:
    s = spec("1kg", (50, 80, 100))
    st: dict[str, object] = {}
    seen = []
    for grams in ([300.0], [300.0, 250.0], [300.0, 250.0, 300.0], [300.0, 250.0, 300.0, 200.0]):
        update = compute_status(s, ledger(*grams), st, NOW)
        st = update.status
        seen.append([(n.reason, n.threshold) for n in update.notifications])
    assert seen == [
        [],
        [("ThresholdCrossed", 50)],
        [("ThresholdCrossed", 80)],
        [("Exceeded", None)],
    ]
    assert st["exceeded"] is True
    assert st["exceededAt"] == "2026-03-15T12:00:00Z"
    assert st["notifiedThresholds"] == [50, 80, 100]


def test_raising_the_limit_recovers() -> None:
    over = compute_status(spec("1kg"), ledger(1200.0), {}, NOW)
    assert over.exceeded
    raised = compute_status(spec("2kg"), ledger(1200.0), over.status, NOW + timedelta(minutes=1))
    assert not raised.exceeded
    assert [n.reason for n in raised.notifications] == ["Recovered"]
    assert raised.status["exceededAt"] is None
    assert raised.status["notifiedThresholds"] == [50]


def test_new_period_resets_usage_thresholds_and_prunes_old_entries() -> None:
    over = compute_status(spec("1kg"), ledger(1200.0), {}, NOW)
    april = datetime(2026, 4, 1, 0, 0, 30, tzinfo=timezone.utc)
    update = compute_status(spec("1kg"), ledger(1200.0), over.status, april)
    st = update.status
    assert (st["usedGrams"], st["jobsCounted"], st["exceeded"]) == (0.0, 0, False)
    assert st["notifiedThresholds"] == []
    assert st["ledger"] == {"uid-0": None}
    assert [n.reason for n in update.notifications] == ["Recovered"]


def test_folded_buckets_count_in_their_period_and_are_pruned_after_it() -> None:
    march = ledger(300.0, 200.0, 100.0).fold(["uid-0", "uid-1"])
    st = compute_status(spec("1kg"), march.ledger, {}, NOW).status
    assert (st["usedGrams"], st["jobsCounted"]) == (600.0, 3)
    assert "ledgerFolded" not in st
    april = datetime(2026, 4, 1, 0, 0, 30, tzinfo=timezone.utc)
    st = compute_status(spec("1kg"), march.ledger, st, april).status
    assert (st["usedGrams"], st["jobsCounted"]) == (0.0, 0)
    assert st["ledger"] == {"uid-2": None}
    assert st["ledgerFolded"] == {"2026-03-15T12:00:00Z": None, "2026-03-15T11:45:00Z": None}


def test_exceeded_condition_keeps_its_transition_time() -> None:
    first = compute_status(spec("1kg"), ledger(1200.0), {}, NOW)
    later = compute_status(spec("1kg"), ledger(1300.0, 1.0), first.status, NOW + timedelta(hours=1))
    cond = {c["type"]: c for c in later.status["conditions"]}  # type: ignore[union-attr]
    assert cond["Exceeded"]["status"] == "True"
    assert cond["Exceeded"]["lastTransitionTime"] == "2026-03-15T12:00:00Z"


def test_exceeded_at_has_whole_seconds_like_creation_timestamps() -> None:
    update = compute_status(spec("1kg"), ledger(1200.0), {}, NOW + timedelta(microseconds=700_000))
    assert update.status["exceededAt"] == "2026-03-15T12:00:00Z"


def test_milligram_budgets_keep_full_precision() -> None:
    st = compute_status(spec("1mg"), ledger(0.000340132), {}, NOW).status
    assert st["usedGrams"] == 0.000340132
    assert st["remainingGrams"] == pytest.approx(0.001 - 0.000340132, rel=1e-12)
