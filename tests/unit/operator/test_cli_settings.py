import asyncio
import urllib.request

import kopf
import pytest
from carbontrack.operator.cli import parse_listen, parser, settings_from_args
from carbontrack.operator.handlers import configure_kopf
from carbontrack.operator.metrics import OperatorMetrics
from carbontrack.operator.settings import OperatorSettings
from carbontrack.operator.webserver import build_app, serve
from prometheus_client import CollectorRegistry

from carbontrack.core.errors import ConfigError


def test_chart_command_line_maps_to_settings() -> None:
    # The exact arguments the Helm chart renders (charts/carbontrack/templates/_helpers.tpl).
    args = parser().parse_args([
        "--prometheus-url=http://prometheus-operated.monitoring.svc:9090", "--namespace=ml",
        "--namespace=research", "--peering=carbontrack", "--no-enforcement", "--listen=0.0.0.0:8080",
    ])
    s = settings_from_args(args)
    assert s == OperatorSettings(
        prometheus_url="http://prometheus-operated.monitoring.svc:9090",
        namespaces=("ml", "research"),
        enforcement=False,
    )
    assert args.peering == "carbontrack" and not args.standalone
    assert parse_listen(args.listen) == ("0.0.0.0", 8080)


@pytest.mark.parametrize("argv", [["--namespace=a", "--all-namespaces"], ["--peering=x", "--standalone"]])
def test_exclusive_flags(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["--prometheus-url=http://p:9090", *argv])


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"prometheus_url": "prometheus:9090"}, "use http://HOST:PORT"),
        ({"scrape_interval_s": 0}, "scrape_interval_s=0: must be > 0"),
        ({"accounting_delay_s": -1}, "accounting_delay_s=-1: must be >= 0"),
        ({"query_attempts": 0}, "must be >= 1"),
        ({"list_chunk_size": -1}, "--list-chunk-size -1: must be >= 0"),
    ],
)
def test_settings_reject_bad_values(kwargs: dict[str, object], fragment: str) -> None:
    base: dict[str, object] = {"prometheus_url": "http://p:9090", **kwargs}
    with pytest.raises(ConfigError, match=fragment):
        OperatorSettings(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["8080", "host:", "host:http"])
def test_parse_listen_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="HOST:PORT"):
        parse_listen(text)


def test_metrics_and_healthz_are_served_on_one_port() -> None:
    metrics = OperatorMetrics(CollectorRegistry())
    metrics.jobs_accounted.labels(result="ok").inc(3)

    async def run() -> tuple[str, str, int]:
        runner = await serve(build_app(metrics.registry, lambda: (True, "ok 0.1.0")), "127.0.0.1", 0)
        port = runner.addresses[0][1]

        def get(path: str) -> tuple[int, str]:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.status, r.read().decode()

        try:
            _, body = await asyncio.to_thread(get, "/metrics")
            status, health = await asyncio.to_thread(get, "/healthz")
        finally:
            await runner.cleanup()
        return body, health, status

    body, health, status = asyncio.run(run())
    assert 'carbontrack_operator_jobs_accounted_total{result="ok"} 3.0' in body
    assert "# TYPE carbontrack_operator_accounting_latency_seconds histogram" in body
    assert (status, health) == (200, "ok 0.1.0\n")


def test_mlflow_tracking_uri_from_flag_or_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    off = settings_from_args(parser().parse_args(["--prometheus-url=http://p:9090"]))
    assert off.mlflow_tracking_uri is None
    flag = settings_from_args(parser().parse_args(
        ["--prometheus-url=http://p:9090", "--mlflow-tracking-uri=http://mlflow:5000"]))
    assert flag.mlflow_tracking_uri == "http://mlflow:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env-mlflow:5000")
    env = settings_from_args(parser().parse_args(["--prometheus-url=http://p:9090"]))
    assert env.mlflow_tracking_uri == "http://env-mlflow:5000"
    with pytest.raises(ConfigError, match="mlflow-tracking-uri"):
        OperatorSettings(prometheus_url="http://p:9090", mlflow_tracking_uri=" ")


@pytest.mark.parametrize(("argv", "chunk"),
                         [([], 500), (["--list-chunk-size=50"], 50), (["--list-chunk-size=0"], None)])
def test_list_chunk_size_pages_kopfs_start_up_list(argv: list[str], chunk: int | None) -> None:
    ours = settings_from_args(parser().parse_args(["--prometheus-url=http://p:9090", *argv]))
    theirs = kopf.OperatorSettings()
    configure_kopf(theirs, ours)
    assert theirs.watching.chunk_size == chunk
    assert theirs.persistence.finalizer == "carbontrack.io/kopf"  # never kopf's default name
    assert theirs.watching.server_timeout == 300
    # kopf's idle per-object workers hold their last event: they idle briefly, not 5 s
    assert theirs.queueing.idle_timeout == 0.2
