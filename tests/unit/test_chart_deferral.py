"""Chart: deferrable Jobs are held at admission, and operator.deferral.zone passes the zone and
the exporter's intensity selection to the operator (helm template, the real binary)."""

from __future__ import annotations

import json
from typing import Any

from carbontrack.operator.cli import parser, settings_from_args
from test_chart_tools import helm_template, helm_template_error, one


def args_of(docs: list[dict[str, Any]]) -> list[str]:
    dep = one(docs, "Deployment", "operator")
    return list(dep["spec"]["template"]["spec"]["containers"][0]["args"])


def test_deferral_zone_passes_the_exporters_intensity_selection_to_the_operator() -> None:
    assert not [a for a in args_of(helm_template()) if "deferral" in a or "intensity" in a]
    docs = helm_template(set_json=[
        'operator.deferral={"zone": "DE"}',
        'exporter.intensity={"provider": "electricitymaps", "baseUrl": "http://em.proxy:8080"}',
        'operator.credentials=[{"env": "ELECTRICITYMAPS_API_TOKEN", "secretName": "em", "secretKey": "token"}]',
    ])
    args = args_of(docs)
    assert {"--deferral-zone=DE", "--intensity-provider=electricitymaps",
            "--intensity-base-url=http://em.proxy:8080"} <= set(args)
    # the rendered flags are ones the operator's own parser accepts, giving these settings
    settings = settings_from_args(parser().parse_args(args[1:]))
    assert settings.deferral_zone == "DE"
    assert settings.intensity is not None and settings.intensity.provider == "electricitymaps"
    env = one(docs, "Deployment", "operator")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "ELECTRICITYMAPS_API_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "em", "key": "token"}}} in env


def test_bad_deferral_zone_is_refused_by_the_schema() -> None:
    err = helm_template_error(set_json=['operator.deferral={"zone": "DE --evil"}'])
    assert "/operator/deferral/zone" in err


def test_hold_deferrable_policy_suspends_only_annotated_jobs_at_creation() -> None:
    docs = helm_template()
    policy = one(docs, "MutatingAdmissionPolicy", "hold-deferrable")
    assert policy["spec"]["matchConstraints"]["resourceRules"][0]["operations"] == ["CREATE"]
    assert policy["spec"]["matchConditions"] == [{
        "name": "deferrable",
        "expression": "'carbontrack.io/deferrable-until' in object.metadata.?annotations.orValue({})"}]
    assert policy["spec"]["mutations"][0]["applyConfiguration"]["expression"] == \
        "Object{spec: Object.spec{suspend: true}}"
    binding = one(docs, "MutatingAdmissionPolicyBinding", "hold-deferrable")
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    vap = one(docs, "ValidatingAdmissionPolicy", "job-integrity")
    keys = json.loads(next(v["expression"] for v in vap["spec"]["variables"] if v["name"] == "userKeys"))
    assert "carbontrack.io/deferrable-until" in keys and "carbontrack.io/deferral" not in keys
    off = helm_template(set_json=["admissionPolicies.mutating=false"])
    assert not [d for d in off if d["kind"].startswith("MutatingAdmissionPolicy")]
