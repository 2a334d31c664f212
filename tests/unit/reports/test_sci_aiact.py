"""SCI with embodied M from the packaged CCF coefficients; EU AI Act training energy; statement."""

from __future__ import annotations

import csv
import hashlib
import re
from importlib import resources

import pytest

from carbontrack.core.errors import ConfigError
from carbontrack.reports.aiact import form_text, format_sig, model_energy, round_sig
from carbontrack.reports.model import LineItem
from carbontrack.reports.sci import EmbodiedModel, EmbodiedSettings, Server, load_ccf_servers
from carbontrack.reports.sources_cluster import IdentityKeys, job_to_line
from carbontrack.reports.statement import compute_statement

from .conftest import make_job


def _line(name: str, **kw: object) -> LineItem:
    got = job_to_line(make_job(name, **kw), IdentityKeys())  # type: ignore[arg-type]
    assert isinstance(got, LineItem)
    return got


def test_packaged_ccf_files_match_their_recorded_checksums() -> None:
    data = resources.files("carbontrack.reports").joinpath("data")
    prov = data.joinpath("PROVENANCE.md").read_text()
    recorded = dict((n, h) for h, n in re.findall(r"^([0-9a-f]{64})  (\S+\.csv)$", prov, re.M))
    assert len(recorded) == 6
    for name, digest in recorded.items():
        assert hashlib.sha256(data.joinpath(name).read_bytes()).hexdigest() == digest, name


def test_ccf_catalogue_values_come_from_the_packaged_rows() -> None:
    cat = load_ccf_servers()
    rows = resources.files("carbontrack.reports").joinpath("data").joinpath("coefficients-aws-embodied.csv")
    p4d = next(r for r in csv.DictReader(rows.read_text().splitlines()) if r["type"] == "p4d.24xlarge")
    assert cat["aws:p4d.24xlarge"].total_kgco2e == float(p4d["total"]) == 4676.79
    assert (cat["aws:p4d.24xlarge"].vcpus, cat["aws:p4d.24xlarge"].gpus) == (96, 8)
    assert (cat["aws:g4dn.metal"].gpus, cat["aws:g4dn.xlarge"].vcpus) == (8, 96)
    assert "aws:p2.16xlarge" not in cat  # no vCPU data for retired families: left out, not guessed
    assert cat["azure:NC24"] == Server(2038.71, 24, 4, cat["azure:NC24"].source)
    assert cat["gcp:n1-standard-8"].total_kgco2e > 1000  # base rack server 1000 kg included
    assert len(cat) > 900


def test_embodied_share_uses_the_larger_of_cpu_and_gpu_reservation() -> None:
    model = EmbodiedModel(EmbodiedSettings(), {"aws:p4d.24xlarge": Server(4676.79, 96, 8, "CCF")})
    line = _line("a", gpus=2, cpu="8")  # 2 h window, GPU share 2/8 > CPU share 8/96
    m, why = model.embodied(line)
    assert m == pytest.approx(4676.79 * (2.0 / (4 * 8760)) * 0.25)
    assert "resource share 0.25 servers by GPU" in why and "aws:p4d.24xlarge" in why
    cpu_only = _line("b", gpus=0, cpu="48")
    m2, why2 = model.embodied(cpu_only)
    assert m2 == pytest.approx(4676.79 * (2.0 / (4 * 8760)) * 0.5) and "by vCPU" in why2


def test_an_8_node_jobs_m_is_8_servers_share() -> None:
    model = EmbodiedModel(EmbodiedSettings(), {"aws:p4d.24xlarge": Server(4676.79, 96, 8, "CCF")})
    # 8 pods x 8 GPUs on 8 p4d.24xlarge nodes for 2 h (make_job's window)
    line = _line("ddp", gpus=8, cpu="48").with_(gpu_count=64, cpu_cores_reserved=384.0, node_count=8)
    m, why = model.embodied(line)
    # 4676.79 kg x 2 h / (4 x 8760 h) = 0.266940 kg per server; x 8 servers (64/8 GPUs)
    assert m == pytest.approx(2.135520, rel=1e-6)
    assert "resource share 8 servers by GPU" in why
    # reserving more than the nodes hold (a wrong request count) is capped at the nodes it ran on
    over = line.with_(gpu_count=128, node_count=8)
    m_over, why_over = model.embodied(over)
    assert m_over == pytest.approx(2.135520, rel=1e-6) and "capped at its 8 nodes" in why_over
    # node count unknown: the reservation alone sets the share (16 servers' worth here)
    assert model.embodied(over.with_(node_count=0))[0] == pytest.approx(4.271040, rel=1e-6)


def test_sci_is_operational_plus_embodied_per_declared_unit() -> None:
    model = EmbodiedModel(EmbodiedSettings(lifespan_years=5), {"box": Server(3000.0, 64, 0, "own LCA")})
    line = _line("e", node_selector={"node.kubernetes.io/instance-type": "box"}, cpu="16", gpus=0,
                 extra_annotations={"carbontrack.io/functional-unit": "epoch",
                                    "carbontrack.io/functional-units": "10"})
    out = model.apply(line)
    m = 3000.0 * (2.0 / (5 * 8760)) * 0.25
    assert out.embodied_kgco2e == pytest.approx(m)
    assert out.functional_unit == "epoch"
    assert out.sci_g_per_unit == pytest.approx((0.1 + m) * 1000 / 10)


def test_embodied_not_computed_is_explained_not_zero() -> None:
    model = EmbodiedModel(EmbodiedSettings(), {})
    out = model.apply(_line("x", node_selector={}))
    assert out.embodied_kgco2e is None and "no instance type" in out.embodied_assumptions
    assert out.sci_g_per_unit == pytest.approx(100.0)  # operational only, still per Job
    out2 = model.apply(_line("y", node_selector={"node.kubernetes.io/instance-type": "mystery.large"}))
    assert out2.embodied_kgco2e is None and "'mystery.large'" in out2.embodied_assumptions


def test_config_servers_and_lifespan_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"embodied\.servers\.dgx"):
        EmbodiedSettings.from_dict({"servers": {"dgx": {"vcpus": 10}}})
    with pytest.raises(ConfigError, match="lifespan_years"):
        EmbodiedSettings.from_dict({"lifespan_years": 0})


@pytest.mark.parametrize(
    ("x", "rounded", "text"),
    [(1234.5, 1200, "1200"), (0.0012345, 0.0012, "0.0012"), (0.0996, 0.1, "0.10"), (9.96, 10, "10"),
     (0.0, 0.0, "0"), (1.05, 1.1, "1.1"), (37.0, 37.0, "37")],
)
def test_two_significant_figures(x: float, rounded: float, text: str) -> None:
    assert round_sig(x, 2) == pytest.approx(rounded)
    assert format_sig(x, 2) == text


def test_training_energy_sums_every_run_of_a_model_including_failed_and_preliminary() -> None:
    lines = [
        _line("r1", model="llm", components={"gpu": 400.0}, pue=1.25),
        _line("r2", model="llm", components={"gpu": 300.0, "cpu": 34.0}, status="Failed", pue=1.25),
        _line("r3", model="llm", components={"gpu": 200.0}, pue=1.25,
              extra_labels={"carbontrack.io/run-kind": "preliminary"}, method="estimated"),
        _line("other", model="bert", components={"gpu": 1.0}),
    ]
    got = {e.model: e for e in model_energy(lines)}
    llm = got["llm"]
    assert (llm.jobs, llm.completed, llm.failed, llm.preliminary) == (3, 2, 1, 1)
    assert llm.facility_energy_mwh == pytest.approx((400 + 334 + 200) * 1.25 / 1000)
    assert llm.facility_energy_mwh_2sf == "1.2"  # 1.1675 MWh
    assert llm.measured_or_estimated == "partly estimated"
    assert "1 failed" in llm.methodology and "PUE 1.25" in llm.methodology
    text = form_text(llm)
    assert "Energy consumption during training: 1.2 MWh (partly estimated)" in text
    assert got["bert"].facility_energy_mwh_2sf == "0.0012"


def test_compute_statement_lists_every_run_and_the_totals() -> None:
    lines = [_line("a", gpu_hours=4.0), _line("b", gpu_hours=6.0, status="Failed")]
    text = compute_statement(lines)
    assert "ran 2 jobs (including failed and preliminary runs)" in text
    assert "10.0 GPU-hours" in text and "6.24 kWh" in text and "0.200 kgCO2e" in text
    assert text.count("| ml/") == 2 and "| Failed |" in text
    mem = _line("m").with_(memory_gb_reserved=64.0)
    assert "64 GB RAM" in compute_statement([mem]) and "64.0 GB RAM reserved in all" in compute_statement([mem])
