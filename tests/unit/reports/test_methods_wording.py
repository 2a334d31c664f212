"""One method representation end to end; the statement and the AI Act text follow it."""

from __future__ import annotations

import pytest

from carbontrack.reports import methods
from carbontrack.reports.aiact import model_energy
from carbontrack.reports.model import SOURCE_PROMETHEUS, SOURCE_TRACKER, LineItem
from carbontrack.reports.sources_cluster import IdentityKeys, job_to_line
from carbontrack.reports.statement import compute_statement

from .conftest import make_job


def _line(name: str, **kw: object) -> LineItem:
    got = job_to_line(make_job(name, **kw), IdentityKeys())  # type: ignore[arg-type]
    assert isinstance(got, LineItem)
    return got


@pytest.mark.parametrize(
    ("text", "words", "written", "kind"),
    [
        ("measured", {"measured"}, "measured", "measured"),
        ("sampled", {"sampled"}, "sampled", "measured"),
        ("measured+sampled", {"measured", "sampled"}, "measured+sampled", "measured"),
        ("estimated+measured", {"estimated", "measured"}, "estimated+measured", "partly estimated"),
        ("measured+estimated", {"estimated", "measured"}, "estimated+measured", "partly estimated"),
        ("mixed(estimated,measured)", {"estimated", "measured"}, "estimated+measured", "partly estimated"),
        ("Mixed( measured , sampled )", {"measured", "sampled"}, "measured+sampled", "measured"),
        ("estimated", {"estimated"}, "estimated", "estimated"),
        ("none", set(), "", "estimated"),
        ("", set(), "", "estimated"),
    ],
)
def test_every_written_form_parses_to_one_representation(text: str, words: set[str], written: str,
                                                         kind: str) -> None:
    assert methods.parse(text) == words
    assert methods.canonical([text]) == written
    assert methods.kind([text]) == kind


def test_a_line_without_a_method_keeps_a_set_of_lines_from_being_called_measured() -> None:
    assert methods.kind(["measured", "measured"]) == "measured"
    assert methods.kind(["measured", ""]) == "partly estimated"


def test_cluster_lines_carry_the_canonical_form() -> None:
    assert _line("a", method="measured+estimated").energy_method == "estimated+measured"
    assert _line("b", method="mixed(measured,sampled)").energy_method == "measured+sampled"


def _kwh_lines(method_a: str, method_b: str) -> list[LineItem]:
    # facility energy: 2.6 kWh x 1.2 = 3.12 kWh each (make_job's default components)
    return [_line("a", method=method_a), _line("b", method=method_b)]


@pytest.mark.parametrize(
    ("a", "b", "sentence"),
    [
        ("measured", "sampled", "Measured energy was 6.24 kWh including"),
        ("estimated", "mixed(estimated)", "Estimated energy was 6.24 kWh including"),
        ("measured", "estimated+measured",
         "Energy, partly measured and partly estimated (3.12 kWh from jobs measured throughout), "
         "was 6.24 kWh including"),
    ],
)
def test_statement_wording_follows_the_method(a: str, b: str, sentence: str) -> None:
    text = compute_statement(_kwh_lines(a, b))
    assert sentence in text
    if a != "measured" or b != "sampled":
        assert "Measured energy" not in text


def test_ai_act_kind_and_methods_from_every_written_form() -> None:
    got = model_energy(_kwh_lines("measured", "mixed(estimated,measured)"))[0]
    assert (got.measured_or_estimated, got.methods) == ("partly estimated", ["estimated", "measured"])
    only_sampled = model_energy(_kwh_lines("sampled", "measured"))[0]
    assert only_sampled.measured_or_estimated == "measured"


def test_ai_act_methodology_names_the_sources_actually_used() -> None:
    cluster = _line("job", model="m1", method="measured")
    tracker = cluster.with_(source=SOURCE_TRACKER, job="run-1", job_uid="r1", energy_method="estimated")
    prom = cluster.with_(source=SOURCE_PROMETHEUS, job="live", job_uid="p1")
    only_tracker = model_energy([tracker])[0].methodology
    assert "1 runs measured by the CarbonTrack tracker on their host" in only_tracker
    assert "Kubernetes" not in only_tracker and "operator" not in only_tracker
    assert "Energy was recorded as estimated (from utilisation" in only_tracker and "RAPL" not in only_tracker
    all_three = model_energy([cluster, tracker, prom])[0].methodology
    assert "sum over all 3 runs" in all_three
    assert "1 Kubernetes Jobs accounted by the CarbonTrack operator" in all_three
    assert "1 Kubernetes Jobs read from the exporter's counters in Prometheus" in all_three
    assert "1 runs measured by the CarbonTrack tracker" in all_three
    assert ("Energy was recorded as estimated (from utilisation" in all_three
            and "; measured (read from hardware energy counters" in all_three)


def test_ai_act_text_says_when_a_method_was_not_recorded() -> None:
    measured = _line("a", model="m2", method="measured")
    text = model_energy([measured, measured.with_(job="b", job_uid="b", energy_method="")])[0].methodology
    assert "for some runs the method was not recorded (counted as estimated)" in text
    assert "(figure is partly estimated)" in text
    assert "Energy was obtained by methods not recorded (figure is estimated)" in model_energy(
        [measured.with_(energy_method="")])[0].methodology
