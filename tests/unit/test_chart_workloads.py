"""The chart covers every finished-workload kind of operator/workloads/: the operator's RBAC
(test_chart.py) and the integrity policies on their carbontrack.io/ annotations and holds."""

from __future__ import annotations

import json

from carbontrack.operator.jobs import USER_ANNOTATIONS
from carbontrack.operator.workloads import default_registry
from test_chart_tools import by_kind, helm_template, one


def test_integrity_policies_cover_every_workload_kind_with_its_hold_field() -> None:
    docs = helm_template()
    policies = {p["metadata"]["name"]: p for p in by_kind(docs, "ValidatingAdmissionPolicy")}
    covered: dict[tuple[str, str], str] = {}
    for name, policy in policies.items():
        for rule in policy["spec"]["matchConstraints"]["resourceRules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    covered[(group, resource)] = name
    for adapter in default_registry():
        name = covered[(adapter.group, adapter.plural)]
        policy = policies[name]
        variables = {v["name"]: v["expression"] for v in policy["spec"]["variables"]}
        assert sorted(json.loads(variables["userKeys"])) == sorted(USER_ANNOTATIONS), name
        # the hold the policy protects is the field the adapter's hold patch sets
        hold = adapter.hold_patch()
        assert hold is not None
        path = []
        while isinstance(hold, dict):
            (key, hold), = hold.items()
            path.append(key)
        field = "object." + ".?".join(path)
        held = next(v["expression"] for v in policy["spec"]["validations"] if "held" in v["expression"])
        assert field in held or (adapter.kind == "Job" and "object.spec.?suspend" in held), (name, held)
        binding = one(docs, "ValidatingAdmissionPolicyBinding", name)
        assert binding["spec"]["policyName"] == name and binding["spec"]["validationActions"] == ["Deny"]


def test_no_integrity_policies_when_validating_is_off() -> None:
    docs = helm_template(set_json=["admissionPolicies.validating=false"])
    assert not by_kind(docs, "ValidatingAdmissionPolicy")
