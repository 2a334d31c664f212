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


def rolling(limit: str = "1kg", window: str = "7d") -> BudgetSpec:
    return parse_spec({"limit": limit, "period": {"type": "Rolling", "window": window},
                       "selector": {}, "thresholds": [50, 80, 100], "action": "Suspend"})


def test_rolling_budget_notifies_once_and_keeps_exceeded_at_while_its_window_slides() -> None:
    # regression: each update of a rolling budget used to look like a new period (its start
    # moves), so every threshold Event was re-sent and exceededAt moved forward every 30 s
    over = Ledger([LedgerEntry("u1", "j", NOW - timedelta(hours=1), NOW, 1200.0, 4.0)])
    first = compute_status(rolling(), over, {}, NOW)
    assert [(n.reason, n.threshold) for n in first.notifications] == [
        ("ThresholdCrossed", 50), ("ThresholdCrossed", 80), ("Exceeded", None)]
    st = first.status
    for minutes in (1, 16, 90, 60 * 24):
        update = compute_status(rolling(), over, st, NOW + timedelta(minutes=minutes))
        assert update.notifications == []
        assert update.status["exceededAt"] == "2026-03-15T12:00:00Z"
        assert update.status["notifiedThresholds"] == [50, 80, 100]
        st = update.status
    # the Job slides out of the window: recovered, pruned, thresholds forgotten
    later = compute_status(rolling(), over, st, NOW + timedelta(days=7, minutes=30))
    assert [n.reason for n in later.notifications] == ["Recovered"]
    assert (later.status["usedGrams"], later.status["exceededAt"]) == (0.0, None)
    assert later.status["notifiedThresholds"] == [] and later.status["ledger"] == {"u1": None}
    # a different window is a different period: thresholds fire afresh
    wider = compute_status(rolling(window="30d"), over, st, NOW + timedelta(minutes=2))
    assert [n.reason for n in wider.notifications] == ["ThresholdCrossed", "ThresholdCrossed", "Exceeded"]


def test_rolling_budget_totals_are_the_same_folded_or_not_as_the_window_slides() -> None:
    # Jobs finishing every 7 minutes over 9 days; fold most of them, then slide the window in
    # 1-minute steps across two bucket edges: folded and unfolded ledgers give the same totals
    start = NOW - timedelta(days=9)
    entries = [LedgerEntry(f"u{i}", f"j{i}", start + timedelta(minutes=7 * i), NOW,
                           *((None, None) if i % 11 == 0 else (1.0 + i % 7, 0.01))) for i in range(9 * 24 * 60 // 7)]
    plain = Ledger(entries)
    folded = plain.fold([e.uid for e in entries if e.finished_at < NOW - timedelta(hours=1)]).ledger
    assert len(folded) < 10 and folded.folded()
    for minutes in range(0, 40):
        at = NOW + timedelta(days=2, minutes=minutes, seconds=13)
        a = compute_status(rolling("1t"), plain, {}, at).status
        b = compute_status(rolling("1t"), folded, {}, at).status
        assert (a["jobsCounted"], a["jobsWithoutData"]) == (b["jobsCounted"], b["jobsWithoutData"])
        assert a["usedGrams"] == pytest.approx(b["usedGrams"], rel=1e-12)
        assert 0 < int(a["jobsCounted"]) < len(entries)  # type: ignore[call-overload]
        assert int(a["jobsWithoutData"]) > 0  # type: ignore[call-overload]
