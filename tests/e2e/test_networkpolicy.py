"""The chart's NetworkPolicies on a real API server: created (not only dry-run) from the
default render and from ci/networkpolicy-values.yaml, and read back as they were rendered
(the server's validation and defaulting keep every selector, port and rule).

Enforcement is tested on the real node, where kube-router's policy controller enforces the
chart's policy (tests/e2e/test_realnode.py::test_network_policy_enforced_by_kube_router);
the kwok nodes here have no pod network at all."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.e2e


def _tools() -> Any:
    name = "carbontrack_chart_tools"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE.parent / "unit" / "test_chart_tools.py")
        assert spec is not None and spec.loader is not None
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


def _policies(namespace: str, values: list[Path]) -> list[dict[str, Any]]:
    text = _tools().helm_template_text(values=values, namespace=namespace, release="np")
    return [d for d in yaml.safe_load_all(text) if d and d["kind"] == "NetworkPolicy"]


@pytest.mark.parametrize("scenario", ["default", "networkpolicy-values"])
def test_network_policies_are_accepted_and_kept_by_the_api_server(
    api_client: Any, namespace: str, scenario: str
) -> None:
    values = [] if scenario == "default" else [_tools().CHART / "ci" / f"{scenario}.yaml"]
    docs = _policies(namespace, values)
    assert len(docs) == 2
    net = client.NetworkingV1Api(api_client)
    for doc in docs:
        net.create_namespaced_network_policy(namespace, doc)
    stored = {p.metadata.name: api_client.sanitize_for_serialization(p.spec)
              for p in net.list_namespaced_network_policy(namespace).items}
    assert sorted(stored) == sorted(d["metadata"]["name"] for d in docs)
    for doc in docs:
        got = stored[doc["metadata"]["name"]]
        assert got["podSelector"] == doc["spec"]["podSelector"]
        assert got["policyTypes"] == doc["spec"]["policyTypes"]
        assert got["ingress"] == doc["spec"]["ingress"]
        assert got.get("egress") == doc["spec"].get("egress")
