"""Static checks of the CarbonBudget CRD; the API server itself checks it in the e2e test."""

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
CRD = yaml.safe_load((ROOT / "crds" / "carbonbudgets.carbontrack.io.yaml").read_text())
VERSION = CRD["spec"]["versions"][0]
CASES = yaml.safe_load((Path(__file__).parent / "invalid_carbonbudgets.yaml").read_text())


def rules(node: Any) -> list[dict[str, str]]:
    found = []
    if isinstance(node, dict):
        found += node.get("x-kubernetes-validations", [])
        for value in node.values():
            found += rules(value)
    elif isinstance(node, list):
        for value in node:
            found += rules(value)
    return found


def test_identity() -> None:
    assert CRD["metadata"]["name"] == "carbonbudgets.carbontrack.io"
    assert CRD["spec"]["scope"] == "Namespaced"
    assert (VERSION["name"], VERSION["served"], VERSION["storage"]) == ("v1alpha1", True, True)
    assert VERSION["subresources"] == {"status": {}}


def test_printer_columns_show_limit_used_percent_period_exceeded() -> None:
    columns = {c["name"]: c["jsonPath"] for c in VERSION["additionalPrinterColumns"]}
    assert columns["Limit"] == ".spec.limit"
    assert columns["Used"] == ".status.used"
    assert columns["Percent"] == ".status.percent"
    assert columns["Period"] == ".status.periodName"
    assert columns["Exceeded"] == ".status.exceeded"


def test_every_cel_rule_has_a_readable_message() -> None:
    found = rules(VERSION["schema"])
    assert len(found) >= 12
    for rule in found:
        assert rule["message"] and len(rule["message"]) > 20 and "self" not in rule["message"]


def test_every_expected_rejection_message_exists_in_the_crd_or_is_the_api_servers_own() -> None:
    messages = " ".join(r["message"] for r in rules(VERSION["schema"]))
    api_server_own = ("supported values", "Required value")
    for case in CASES:
        fragment = case["apiserver"]
        assert fragment in messages or any(own in fragment for own in api_server_own), case["case"]


def test_status_ledger_is_free_form_and_spec_is_structural() -> None:
    schema = VERSION["schema"]["openAPIV3Schema"]
    assert schema["properties"]["status"]["properties"]["ledger"]["x-kubernetes-preserve-unknown-fields"]
    assert "x-kubernetes-preserve-unknown-fields" not in schema["properties"]["spec"]
