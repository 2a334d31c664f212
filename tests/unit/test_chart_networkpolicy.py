"""The chart's NetworkPolicies: only the configured Prometheus reaches the exporter's and the
operator's metrics port; everything else is denied ingress; egress as configured. Rendered
with helm and checked by value; every ci/ scenario (networkpolicy-values.yaml among them) is
also validated by kubeconform in test_chart.py."""

from __future__ import annotations

from typing import Any

import pytest
from test_chart_tools import CHART, by_kind, helm_template, helm_template_error, helm_template_text, kubeconform

Doc = dict[str, Any]
SCENARIO = CHART / "ci" / "networkpolicy-values.yaml"


def policies(docs: list[Doc]) -> dict[str, Doc]:
    return {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in by_kind(docs, "NetworkPolicy")}


def pod_templates(docs: list[Doc], kind: str) -> list[Doc]:
    return [d["spec"]["template"] for d in by_kind(docs, kind)]


def selects(policy: Doc, template: Doc) -> bool:
    labels = template["metadata"]["labels"]
    return all(labels.get(k) == v for k, v in policy["spec"]["podSelector"]["matchLabels"].items())


def port_of(template: Doc, name: str) -> int:
    (c,) = template["spec"]["containers"]
    return int(next(p["containerPort"] for p in c["ports"] if p["name"] == name))


@pytest.fixture(scope="module")
def default() -> list[Doc]:
    return helm_template()


def test_on_by_default_one_policy_each_selecting_exactly_its_pods(default: list[Doc]) -> None:
    pols = policies(default)
    assert sorted(pols) == ["exporter", "operator"]
    exporters, operators = pod_templates(default, "DaemonSet"), pod_templates(default, "Deployment")
    assert exporters and operators
    assert all(selects(pols["exporter"], t) for t in exporters)
    assert not any(selects(pols["exporter"], t) for t in operators)
    assert all(selects(pols["operator"], t) for t in operators)
    assert not any(selects(pols["operator"], t) for t in exporters)


def test_only_prometheus_may_connect_and_only_to_the_metrics_port(default: list[Doc]) -> None:
    pols = policies(default)
    ports = {"exporter": port_of(pod_templates(default, "DaemonSet")[0], "metrics"),
             "operator": port_of(pod_templates(default, "Deployment")[0], "http")}
    assert ports == {"exporter": 9875, "operator": 8080}
    for component, pol in pols.items():
        spec = pol["spec"]
        assert spec["policyTypes"] == ["Ingress"]  # egress open by default
        assert "egress" not in spec
        assert spec["ingress"] == [{
            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                      "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}],
            "ports": [{"protocol": "TCP", "port": ports[component]}],
        }]


def test_the_default_prometheus_is_the_one_the_operator_queries(default: list[Doc]) -> None:
    (dep,) = by_kind(default, "Deployment")
    args = " ".join(dep["spec"]["template"]["spec"]["containers"][0]["args"])
    assert "prometheus-operated.monitoring.svc" in args  # the "monitoring" namespace the policy allows


def test_disabled_renders_none() -> None:
    assert by_kind(helm_template(set_=["networkPolicy.enabled=false"]), "NetworkPolicy") == []


def test_a_disabled_component_gets_no_policy() -> None:
    docs = helm_template(set_=["operator.enabled=false"])
    assert sorted(policies(docs)) == ["exporter"]


def test_ports_follow_the_values() -> None:
    docs = helm_template(set_=["exporter.port=9100", "operator.port=8443"])
    pols = policies(docs)
    assert pols["exporter"]["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 9100}]
    assert pols["operator"]["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8443}]


@pytest.fixture(scope="module")
def widened() -> list[Doc]:
    return helm_template(values=[SCENARIO])


def test_selectors_and_extra_ingress_widen_both(widened: list[Doc]) -> None:
    for pol in policies(widened).values():
        first, extra = pol["spec"]["ingress"]
        assert first["from"] == [{
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}},
            "podSelector": {"matchExpressions": [{"key": "app.kubernetes.io/name", "operator": "In",
                                                  "values": ["prometheus"]}]},
        }]
        assert extra["from"][0]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "grafana-agent"}}
        assert "ports" not in extra  # as given: the extra rule names no port, so all of them


def test_egress_when_enabled(widened: list[Doc]) -> None:
    pols = policies(widened)
    for component, pol in pols.items():
        spec = pol["spec"]
        assert spec["policyTypes"] == ["Ingress", "Egress"]
        dns, api, *rest = spec["egress"]
        assert dns["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}]
        assert {(p["protocol"], p["port"]) for p in dns["ports"]} == {("UDP", 53), ("TCP", 53)}
        assert api["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}, {"ipBlock": {"cidr": "192.168.10.5/32"}}]
        assert [p["port"] for p in api["ports"]] == [443, 6443]
        if component == "operator":
            prom, extra = rest
            assert prom["to"][0]["namespaceSelector"] == {
                "matchLabels": {"kubernetes.io/metadata.name": "observability"}}
            assert prom["ports"] == [{"protocol": "TCP", "port": 9090}]
        else:
            (extra,) = rest  # the exporter never talks to Prometheus
        assert extra["to"][0]["ipBlock"]["cidr"] == "0.0.0.0/0"


def test_egress_without_dns_or_api_addresses_denies_them() -> None:
    docs = helm_template(set_json=['networkPolicy.egress={"enabled": true, "dns": false}'])
    exporter = policies(docs)["exporter"]["spec"]
    # no egress rule under policyTypes Egress: all egress denied
    assert exporter["policyTypes"] == ["Ingress", "Egress"] and exporter["egress"] is None


def test_kubeconform_accepts_the_widened_render() -> None:
    results = kubeconform(helm_template_text(values=[SCENARIO]))
    checked = [r for r in results if r.get("kind") == "NetworkPolicy"]
    assert len(checked) == 2 and all(r["status"] == "statusValid" for r in checked)


@pytest.mark.parametrize(("setting", "key"), [
    ('networkPolicy.egress.apiServer.cidrs=["10.0.0.1"]', "/networkPolicy/egress/apiServer/cidrs/0"),
    ('networkPolicy.extraIngress={"from": []}', "/networkPolicy/extraIngress"),
    ('networkPolicy.prometheus.podSelector={"matchLabel": {"a": "b"}}', "/networkPolicy/prometheus/podSelector"),
])
def test_schema_refuses_malformed_values(setting: str, key: str) -> None:
    assert key in helm_template_error(set_json=[setting])
