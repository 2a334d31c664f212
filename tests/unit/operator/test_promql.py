import pytest
from carbontrack.operator import promql


def test_job_totals_takes_max_per_series_then_sums_by_component() -> None:
    q = promql.job_totals(promql.ENERGY, "0b4e-uid", 3600.2)
    assert q == (
        "sum by (node, component, method) (max_over_time("
        'carbontrack_container_energy_joules_total{owner_kind="Job",owner_uid="0b4e-uid"}'
        "[3601s]))"
    )


def test_co2e_query_uses_the_co2e_counter() -> None:
    q = promql.job_totals(promql.CO2E, "u", 60)
    assert q.startswith("sum by (node, component, method) (max_over_time(carbontrack_container_co2e")
    assert q.endswith("[60s]))")


def test_label_values_are_escaped() -> None:
    assert promql.job_selector('a"b\\c') == 'owner_kind="Job",owner_uid="a\\"b\\\\c"'


def test_node_regex_is_sorted_unique_and_escaped() -> None:
    assert promql.node_regex(["n2", "n1.example", "n2"]) == "n1\\\\.example|n2"


def test_node_queries() -> None:
    assert promql.node_pue(["a"], 10) == 'avg_over_time(carbontrack_pue{node=~"a"}[10s])'
    assert promql.node_freshness(["a", "b"]) == 'timestamp(carbontrack_pue{node=~"a|b"})'
    assert promql.node_intensity(["a"], 5) == (
        'avg_over_time(carbontrack_grid_carbon_intensity_grams_per_kwh{node=~"a"}[5s])'
    )
    assert promql.any_freshness() == "max(timestamp(carbontrack_pue))"


def test_job_pods_counts_series_per_pod_and_component() -> None:
    assert promql.job_pods("u", 30) == (
        "count by (pod_uid, component) (max_over_time(carbontrack_container_energy_joules_total"
        '{owner_kind="Job",owner_uid="u"}[30s]))'
    )


@pytest.mark.parametrize("seconds", [0, -5, float("nan"), float("inf")])
def test_range_must_be_positive(seconds: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        promql.range_seconds(seconds)


def test_node_regex_needs_nodes() -> None:
    with pytest.raises(ValueError, match="at least one node"):
        promql.node_regex([])
