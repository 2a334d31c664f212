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


# ---------------------------------------------------------------- folding
def uid(n: int) -> str:
    return f"{n:08x}-1111-4222-8333-{n:012x}"


def test_fold_moves_entries_into_15_minute_buckets_and_keeps_totals_exact() -> None:
    entries = [entry(uid(i), 1.5 * i if i % 5 else None, day=1 + i % 3) for i in range(1, 31)]
    ledger = Ledger(entries)
    before = ledger.totals(MARCH)
    fold = ledger.fold([uid(i) for i in range(1, 21)])
    after = fold.ledger.totals(MARCH)
    assert after.jobs_counted == before.jobs_counted == 30
    assert after.jobs_without_data == before.jobs_without_data == 6
    assert after.co2e_grams == pytest.approx(before.co2e_grams, rel=1e-12)
    assert len(fold.ledger) == 10  # individual entries left
    assert fold.ledger_patch == {uid(i): None for i in range(1, 21)}
    # entries finish at 00:00:00 of days 1-3: three buckets
    assert sorted(fold.folded_patch) == ["2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z",
                                         "2026-03-03T00:00:00Z"]
    assert sum(b["jobs"] for b in fold.folded_patch.values()) == 20  # type: ignore[misc]


def test_folded_uid_is_never_added_again() -> None:
    ledger = Ledger([entry(uid(1), 10.0), entry(uid(2), 20.0)]).fold([uid(1)]).ledger
    assert uid(1) in ledger and uid(2) in ledger and uid(3) not in ledger
    again = ledger.merge([entry(uid(1), 99.0), entry(uid(3), 5.0)])
    totals = again.totals(MARCH)
    assert (totals.co2e_grams, totals.jobs_counted) == (35.0, 3)


def test_folded_status_round_trips_and_rebuilds_the_same_ledger() -> None:
    ledger = Ledger([entry(uid(i), float(i), day=2) for i in range(1, 8)])
    fold = ledger.fold([uid(1), uid(2), uid(3)])
    status_ledger = {k: v for k, v in ledger.to_status().items() if k not in fold.ledger_patch}
    parsed, errors = Ledger.from_status_lenient(status_ledger, fold.folded_patch)
    assert errors == []
    assert parsed == fold.ledger
    # folding the rest later adds to the same bucket, tags appended
    refold = parsed.fold([uid(4)])
    bucket = refold.folded_patch["2026-03-02T00:00:00Z"]
    assert bucket["jobs"] == 4 and bucket["co2eGrams"] == 10.0
    assert len(bucket["uidTags"]) == 4 * 12  # type: ignore[arg-type]


def test_buckets_of_a_past_period_are_outside_the_window() -> None:
    feb = LedgerEntry(uid(9), "old", T0 - timedelta(minutes=1), T0, 7.0, 0.01)
    ledger = Ledger([feb, entry(uid(1), 3.0)]).fold([uid(9), uid(1)]).ledger
    assert [b.start for b in ledger.folded()] == [datetime(2026, 2, 28, 23, 45, tzinfo=timezone.utc),
                                                  T0 + timedelta(days=1)]
    assert ledger.totals(MARCH).co2e_grams == 3.0
    assert ledger.totals(MARCH).jobs_counted == 1


@pytest.mark.parametrize(("data", "fragment"), [
    ({"co2eGrams": -1, "energyKwh": 0, "jobs": 0, "jobsWithoutData": 0, "uidTags": ""}, "co2eGrams"),
    ({"co2eGrams": 1, "energyKwh": 0, "jobs": 2, "jobsWithoutData": 0, "uidTags": "abc"}, "uidTags"),
    ({"co2eGrams": 1, "energyKwh": 0, "jobs": True, "jobsWithoutData": 0, "uidTags": ""}, "jobs"),
])
def test_malformed_folded_bucket_is_reported_and_the_rest_counted(data: dict[str, object], fragment: str) -> None:
    good = Ledger([entry(uid(1), 4.0)]).fold([uid(1)]).folded_patch
    ledger, errors = Ledger.from_status_lenient({}, {**good, "2026-03-05T00:00:00Z": data})
    assert len(errors) == 1 and fragment in str(errors[0]) and "ledgerFolded" in str(errors[0])
    assert ledger.totals(MARCH).co2e_grams == 4.0


def test_bucket_key_must_be_a_quarter_hour() -> None:
    good = Ledger([entry(uid(1), 4.0)]).fold([uid(1)]).folded_patch["2026-03-02T00:00:00Z"]
    _, errors = Ledger.from_status_lenient({}, {"2026-03-02T00:07:00Z": good})
    assert len(errors) == 1 and "15-minute" in str(errors[0])
