"""The chart's authenticated/TLS scraping (values metricsSecurity): the exporter and the
operator get the flags of carbontrack.core.scrapeauth with the Secrets mounted where the flags
point, probes that still work (HTTPS, /healthz when /metrics is guarded), and the
ServiceMonitor/PodMonitor/annotation side Prometheus needs (scheme, tlsConfig, authorization).
The scenario file is also linted and validated by kubeconform in test_chart.py."""

from __future__ import annotations

from typing import Any

import pytest
from test_chart_tools import CHART, by_kind, helm_template, helm_template_error

Doc = dict[str, Any]
SCENARIO = CHART / "ci" / "metrics-security-values.yaml"


def containers(docs: list[Doc]) -> dict[str, tuple[Doc, Doc]]:
    """component -> (pod template, its one container)"""
    out = {}
    for kind in ("DaemonSet", "Deployment"):
        for d in by_kind(docs, kind):
            t = d["spec"]["template"]
            (c,) = t["spec"]["containers"]
            out[d["metadata"]["labels"]["app.kubernetes.io/component"]] = (t, c)
    return out


def parse(component: str, args: list[str]) -> Any:
    """The rendered args through the real CLI parser of that component."""
    if component == "exporter":
        from carbontrack.exporter.settings import parser
        return parser().parse_args(args[1:])
    from carbontrack.operator.cli import parser as op_parser
    return op_parser().parse_args(args[1:])


def mounted_files(template: Doc, container: Doc) -> dict[str, tuple[str, str]]:
    """path in the container -> (Secret, key) for every Secret item mounted."""
    secrets = {v["name"]: v["secret"] for v in template["spec"]["volumes"] if "secret" in v}
    out = {}
    for m in container["volumeMounts"]:
        if m["name"] in secrets:
            assert m["readOnly"] is True
            s = secrets[m["name"]]
            for item in s["items"]:
                out[f"{m['mountPath']}/{item['path']}"] = (s["secretName"], item["key"])
    return out


@pytest.fixture(scope="module")
def secured() -> list[Doc]:
    return helm_template(values=[SCENARIO])


def test_off_by_default_plain_http_and_metrics_probes() -> None:
    docs = helm_template()
    for component, (t, c) in containers(docs).items():
        a = parse(component, c["args"])
        assert (a.tls_cert_file, a.tls_key_file, a.tls_client_ca_file, a.auth_token_file) == (None,) * 4
        assert not any(v.get("secret") for v in t["spec"]["volumes"])
        assert "prometheus.io/scheme" not in t["metadata"]["annotations"]
        assert "scheme" not in c["livenessProbe"]["httpGet"]
    assert containers(docs)["exporter"][1]["readinessProbe"]["httpGet"]["path"] == "/metrics"


def test_each_flag_points_at_the_mounted_secret_key(secured: list[Doc]) -> None:
    for component, (t, c) in containers(secured).items():
        a = parse(component, c["args"])
        files = mounted_files(t, c)
        assert files[str(a.tls_cert_file)] == ("carbontrack-metrics-tls", "tls.crt"), component
        assert files[str(a.tls_key_file)] == ("carbontrack-metrics-tls", "tls.key")
        assert files[str(a.tls_client_ca_file)] == ("carbontrack-metrics-client-ca", "ca.crt")
        assert files[str(a.auth_token_file)] == ("carbontrack-metrics-token", "token")
        assert len(files) == 4  # nothing else of those Secrets (ca.crt of the TLS Secret stays out)
        assert t["metadata"]["annotations"]["prometheus.io/scheme"] == "https"
        for probe in ("livenessProbe", "readinessProbe"):
            # the kubelet probes over HTTPS without credentials: the open /healthz
            assert c[probe]["httpGet"]["scheme"] == "HTTPS"
            assert c[probe]["httpGet"]["path"] == "/healthz"


def test_service_monitors_carry_the_scrape_side(secured: list[Doc]) -> None:
    monitors = by_kind(secured, "ServiceMonitor")
    assert len(monitors) == 2
    for m in monitors:
        (ep,) = m["spec"]["endpoints"]
        assert ep["scheme"] == "https"
        assert ep["tlsConfig"] == {
            "ca": {"secret": {"name": "carbontrack-metrics-tls", "key": "ca.crt"}},
            "serverName": "carbontrack-exporter.carbontrack.svc",
            "cert": {"secret": {"name": "prometheus-scrape-client", "key": "tls.crt"}},
            "keySecret": {"name": "prometheus-scrape-client", "key": "tls.key"}}
        assert ep["authorization"] == {
            "type": "Bearer", "credentials": {"name": "carbontrack-metrics-token", "key": "token"}}


def test_pod_monitors_too_and_token_only_keeps_http() -> None:
    docs = helm_template(set_=["podMonitor.enabled=true",
                               "metricsSecurity.bearerToken.secretName=tok",
                               "metricsSecurity.bearerToken.key=t"])
    monitors = by_kind(docs, "PodMonitor")
    assert len(monitors) == 2
    for m in monitors:
        (ep,) = m["spec"]["podMetricsEndpoints"]
        assert ep["scheme"] == "http" and "tlsConfig" not in ep
        assert ep["authorization"] == {"type": "Bearer", "credentials": {"name": "tok", "key": "t"}}
    for component, (_t, c) in containers(docs).items():
        assert str(parse(component, c["args"]).auth_token_file) == "/etc/carbontrack/metrics-token/t"
        assert c["readinessProbe"]["httpGet"]["path"] == "/healthz"
        assert "scheme" not in c["readinessProbe"]["httpGet"]


def test_mutual_tls_without_a_serving_certificate_is_refused() -> None:
    err = helm_template_error(set_=["metricsSecurity.tls.clientCASecretName=ca"])
    assert "clientCASecretName (mutual TLS) needs metricsSecurity.tls.secretName" in err


def test_the_schema_refuses_an_unknown_key_and_a_bad_secret_name() -> None:
    assert "metricsSecurity" in helm_template_error(set_=["metricsSecurity.tls.secret=x"])
    assert "secretName" in helm_template_error(set_=["metricsSecurity.bearerToken.secretName=Bad_Name"])
