"""Property-based tests of what the exporter and operator parse from the cluster: the
kubelet's pod-resources answers, Job objects (labels, annotations and every field of any
shape) and CarbonRecord objects. Only the documented errors come out, never a negative count.
Each property runs 1,000 examples."""

from __future__ import annotations

import json
from typing import Any

from carbontrack.exporter.podresources import messages
from carbontrack.exporter.podresources.client import allocations
from carbontrack.operator.jobs import REPORT, accounted_uid, job_facts
from google.protobuf.message import DecodeError
from hypothesis import example, given, settings
from hypothesis import strategies as st

from carbontrack.core.errors import ConfigError
from carbontrack.core.records import RecordEntry, parse_object

FUZZ = settings(max_examples=1000, deadline=None)

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6))
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=4,
)
times = st.one_of(st.sampled_from(["2026-11-10T10:00:00Z", "2026-11-10T10:00:00+01:00", "", "yesterday"]),
                  json_values)
counts = st.one_of(st.integers(min_value=-3, max_value=64), st.sampled_from(["2", "1.5", "1Gi", "-1"]), json_values)


def maybe(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually the well-typed value, sometimes anything at all."""
    return st.one_of(good, good, good, json_values)


annotations = st.dictionaries(st.one_of(st.sampled_from([REPORT, "carbontrack.io/accounted-uid",
                                                         "carbontrack.io/budgets"]), st.text(max_size=20)),
                              st.one_of(st.text(max_size=40), json_values.map(json.dumps)), max_size=4)
containers = st.lists(st.fixed_dictionaries({"resources": maybe(st.fixed_dictionaries({
    "limits": maybe(st.dictionaries(st.sampled_from(["nvidia.com/gpu", "amd.com/gpu", "cpu"]), counts, max_size=3)),
}))}), max_size=3)
conditions = st.lists(st.fixed_dictionaries({
    "type": st.sampled_from(["Complete", "Failed", "Suspended"]), "status": st.sampled_from(["True", "False"]),
    "lastTransitionTime": times,
}), max_size=3)
jobs = st.fixed_dictionaries({
    "metadata": maybe(st.fixed_dictionaries({
        "uid": maybe(st.text(min_size=1, max_size=12)), "name": maybe(st.text(max_size=12)),
        "namespace": maybe(st.text(max_size=12)), "creationTimestamp": times,
        "labels": maybe(st.dictionaries(st.text(max_size=12), st.text(max_size=12), max_size=3)),
        "annotations": maybe(annotations), "finalizers": maybe(st.lists(st.text(max_size=10), max_size=2)),
    }, optional={"deletionTimestamp": times})),
    "spec": maybe(st.fixed_dictionaries({
        "parallelism": counts, "completions": counts, "suspend": json_values,
        "template": maybe(st.fixed_dictionaries({"spec": maybe(st.fixed_dictionaries({
            "containers": maybe(containers),
            "nodeSelector": maybe(st.dictionaries(st.text(max_size=5), st.text(max_size=5))),
        }))})),
    })),
    "status": maybe(st.fixed_dictionaries({
        "conditions": maybe(conditions), "completionTime": times, "startTime": times,
        "succeeded": counts, "active": counts, "failed": counts,
    })),
})


@FUZZ
@given(jobs)
@example({"metadata": {"uid": "u", "creationTimestamp": "2026-11-10T10:00:00Z"},
          "spec": {"template": {"spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "-1"}}}]}}}})
@example({"metadata": {"uid": "u", "creationTimestamp": "2026-11-10T10:00:00Z"},
          "spec": {"template": {"spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "1.5"}}}]}}}})
@example({"metadata": ["not", "a", "map"], "spec": {}, "status": {}})
def test_job_facts(job: dict[str, Any]) -> None:
    try:
        facts = job_facts(job)
    except ConfigError:
        return
    assert facts.gpus_per_pod >= 0 and facts.parallelism >= 0 and facts.succeeded >= 0
    assert facts.active >= 0 and facts.failed >= 0 and (facts.completions is None or facts.completions >= 0)
    assert all(k.startswith("carbontrack.io/") for k in facts.annotations)
    assert (facts.outcome is None) == (facts.finished_at is None)


@FUZZ
@given(annotations)
@example({REPORT: "[" * 100_000})  # nested past the interpreter's stack
def test_accounted_uid(notes: dict[str, str]) -> None:
    got = accounted_uid(notes)
    assert got is None or isinstance(got, str)


entries = st.dictionaries(st.text(max_size=8), maybe(st.fixed_dictionaries({
    "job": maybe(st.fixed_dictionaries({"uid": st.text(max_size=8), "name": maybe(st.text(max_size=8))})),
    "finishedAt": times, "accountedAt": times,
    "co2eGrams": maybe(st.floats()), "energyKwh": maybe(st.floats()),
    "labels": maybe(st.dictionaries(st.text(max_size=5), st.text(max_size=5))),
    "budgets": maybe(st.lists(st.text(max_size=5))),
    "annotations": maybe(st.dictionaries(st.text(max_size=5), st.text(max_size=5))),
})), max_size=4)
records = st.fixed_dictionaries({
    "metadata": maybe(st.fixed_dictionaries({"namespace": maybe(st.text(max_size=8)),
                                             "name": maybe(st.text(max_size=8))})),
    "spec": maybe(st.fixed_dictionaries({"entries": maybe(entries)})),
})


@FUZZ
@given(records)
@example({"metadata": "x", "spec": {"entries": {}}})
@example({"metadata": {}, "spec": {"entries": {"u": {
    "job": {"uid": "u"}, "finishedAt": "2026-11-10T10:00:00Z", "accountedAt": "2026-11-10T10:00:00Z",
    "energyKwh": float("nan")}}}})
def test_carbon_record_objects(obj: dict[str, Any]) -> None:
    parsed = parse_object(obj)  # documented: malformed entries are reported, never raised
    assert all(isinstance(e, ConfigError) for e in parsed.errors)
    for entry in parsed.entries.values():
        assert isinstance(entry, RecordEntry)
        for amount in (entry.co2e_grams, entry.energy_kwh):
            assert amount is None or (amount >= 0 and amount == amount and amount != float("inf"))
    assert parsed.size >= 0


def _response(pods: list[tuple[str, str, list[tuple[str, str, list[str]]]]]) -> bytes:
    resp = messages.ListPodResourcesResponse()
    for ns, name, ctrs in pods:
        pod = resp.pod_resources.add(namespace=ns, name=name)
        for cname, resource, ids in ctrs:
            pod.containers.add(name=cname).devices.add(resource_name=resource, device_ids=ids)
    return bytes(resp.SerializeToString())


answers = st.one_of(
    st.binary(max_size=200),
    st.builds(_response, st.lists(st.tuples(st.text(max_size=6), st.text(max_size=6), st.lists(st.tuples(
        st.text(max_size=6),
        st.sampled_from(["nvidia.com/gpu", "nvidia.com/mig-1g.10gb", "amd.com/gpu", "", "example.com/fpga"]),
        st.lists(st.text(max_size=8), max_size=3)), max_size=3)), max_size=3)),
)


@FUZZ
@given(answers)
def test_pod_resources_answers(data: bytes) -> None:
    # gRPC runs this deserializer; its DecodeError reaches the client as an RpcError
    # (INTERNAL, "Exception deserializing response"), which list() turns into PodResourcesError
    try:
        resp = messages.ListPodResourcesResponse.FromString(data)
    except DecodeError:
        return
    got = allocations(resp)
    assert all(a.resource.startswith(("nvidia.com/", "amd.com/")) for a in got)
    assert all(isinstance(v, str) for a in got for v in (a.namespace, a.pod, a.container, a.device_id))
