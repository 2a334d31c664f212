"""The chart's switch for the Kueue AdmissionCheck controller: the operator flag and exactly
the RBAC it needs, only when enabled."""

from __future__ import annotations

from typing import Any

from test_chart_tools import by_kind, helm_template, helm_template_error, one

Doc = dict[str, Any]
KUEUE_CLUSTER_RULES = [
    {"apiGroups": ["kueue.x-k8s.io"], "resources": ["admissionchecks"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["kueue.x-k8s.io"], "resources": ["admissionchecks/status"], "verbs": ["get", "patch"]},
]
KUEUE_WORKLOAD_RULES = [
    {"apiGroups": ["kueue.x-k8s.io"], "resources": ["workloads"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["kueue.x-k8s.io"], "resources": ["workloads/status"], "verbs": ["get", "patch"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
]


def operator_args(docs: list[Doc]) -> list[str]:
    return list(one(docs, "Deployment", "operator")["spec"]["template"]["spec"]["containers"][0]["args"])


def role_rules(docs: list[Doc], suffix: str) -> list[Doc]:
    roles = [r for r in by_kind(docs, "ClusterRole") if r["metadata"]["name"].endswith(suffix)]
    assert len(roles) == 1, f"no single ClusterRole ending in {suffix}"
    return list(roles[0]["rules"])


def test_kueue_admission_off_by_default() -> None:
    docs = helm_template()
    assert "--kueue-admission-check" not in operator_args(docs)
    rules = role_rules(docs, "-operator") + role_rules(docs, "-operator-cluster")
    assert not [r for r in rules if "kueue.x-k8s.io" in r["apiGroups"] or "pods" in r["resources"]]


def test_kueue_admission_enabled_passes_the_flag_and_grants_its_rbac() -> None:
    docs = helm_template(set_=["operator.kueueAdmission.enabled=true"])
    assert "--kueue-admission-check" in operator_args(docs)
    cluster = role_rules(docs, "-operator-cluster")
    namespaced = role_rules(docs, "-operator")
    assert [r for r in cluster if "kueue.x-k8s.io" in r["apiGroups"]] == KUEUE_CLUSTER_RULES
    assert [r for r in namespaced if "kueue.x-k8s.io" in r["apiGroups"] or "pods" in r["resources"]] \
        == KUEUE_WORKLOAD_RULES


def test_kueue_admission_value_is_validated() -> None:
    assert "kueueAdmission" in helm_template_error(set_=["operator.kueueAdmission.enable=true"])
