from datetime import datetime, timedelta, timezone
from itertools import permutations

import pytest
from carbontrack.operator.ledger import Ledger, LedgerEntry
from carbontrack.operator.period import Window

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
MARCH = Window(T0, datetime(2026, 4, 1, tzinfo=timezone.utc), "2026-03")


def entry(uid: str, grams: float | None, name: str = "train", day: int = 2) -> LedgerEntry:
    finished = T0 + timedelta(days=day - 1)
    return LedgerEntry(uid, name, finished, finished + timedelta(seconds=20), grams,
                       None if grams is None else grams / 400)


def test_merge_is_idempotent_for_redelivered_jobs() -> None:
    a = Ledger([entry("u1", 100.0)])
    once = a.merge([entry("u2", 50.0)])
    twice = once.merge([entry("u2", 50.0)]).merge(once)
    assert twice == once
    assert twice.totals(MARCH).co2e_grams == 150.0
    assert twice.totals(MARCH).jobs_counted == 2


def test_first_accounting_of_a_uid_wins() -> None:
    # An operator restarted mid-accounting may compute a slightly different number for the
    # same Job (more samples); the ledger keeps the first and never adds the second.
    ledger = Ledger([entry("u1", 100.0)]).merge([entry("u1", 101.0)])
    assert ledger.totals(MARCH).co2e_grams == 100.0
    assert len(ledger) == 1


def test_same_name_new_uid_counts_twice() -> None:
    ledger = Ledger().merge([entry("uid-a", 10.0, name="nightly")]).merge(
        [entry("uid-b", 15.0, name="nightly")]
    )
    assert ledger.totals(MARCH).co2e_grams == 25.0
    assert {e.name for e in ledger.entries()} == {"nightly"}


def test_merge_order_does_not_matter_for_distinct_uids() -> None:
    parts = [Ledger([entry("a", 1.0)]), Ledger([entry("b", 2.0)]), Ledger([entry("c", 4.0)])]
    results = set()
    for order in permutations(parts):
        total = Ledger()
        for part in order:
            total = total.merge(part)
        results.add(total)
    assert len(results) == 1
    assert next(iter(results)).totals(MARCH).co2e_grams == 7.0


def test_no_data_entries_are_counted_as_jobs_but_not_as_zero_grams() -> None:
    ledger = Ledger([entry("a", 3.0), entry("b", None)])
    totals = ledger.totals(MARCH)
    assert (totals.co2e_grams, totals.jobs_counted, totals.jobs_without_data) == (3.0, 2, 1)


def test_only_jobs_finished_inside_the_window_count() -> None:
    before = LedgerEntry("old", "x", T0 - timedelta(seconds=1), T0, 1000.0, 2.5)
    ledger = Ledger([before, entry("new", 5.0)])
    assert ledger.totals(MARCH).co2e_grams == 5.0
    assert "old" in ledger and "old" not in ledger.within(MARCH)


def test_status_round_trip_preserves_every_field() -> None:
    ledger = Ledger([entry("a", 3.25), entry("b", None)])
    raw = ledger.to_status()
    assert raw["b"]["co2eGrams"] is None
    assert raw["a"]["finishedAt"] == "2026-03-02T00:00:00Z"
    assert Ledger.from_status(raw) == ledger


def test_from_status_tolerates_missing_ledger() -> None:
    assert len(Ledger.from_status(None)) == 0


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_invalid_amounts_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="invalid amount"):
        LedgerEntry("u", "n", T0, T0, bad, 1.0)


def test_lenient_parse_keeps_valid_entries_and_names_the_malformed_one() -> None:
    ok = entry("u-ok", 12.5).to_dict()
    ledger, errors = Ledger.from_status_lenient(
        {"u-ok": ok, "u-bad": {**ok, "co2eGrams": "lots"}, "u-late": {"name": "x"}})
    assert [e.uid for e in ledger.entries()] == ["u-ok"]
    assert ledger.totals(MARCH).co2e_grams == 12.5
    assert sorted(str(e).split("'")[1] for e in errors) == ["u-bad", "u-late"]
    assert all("\n" not in str(e) and "fix or delete" in str(e) for e in errors)
