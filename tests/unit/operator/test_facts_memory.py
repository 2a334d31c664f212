"""JobFacts stay small: 10,000 workloads present are held as facts (docs/performance/operator-memory.md)."""

from __future__ import annotations

from typing import Any

from carbontrack.operator import jobs
from carbontrack.operator.workloads.registry import JOB

from carbontrack.devcluster.workloads import sim_job


def manifest(name: str, cpu: float = 0.5) -> dict[str, Any]:
    body = sim_job(name, run_seconds=5, cpu_cores=cpu)
    body["metadata"].update(uid=f"uid-{name}", namespace="ns", creationTimestamp="2026-12-07T01:00:00Z")
    return body


def test_facts_have_no_instance_dict() -> None:
    facts = JOB.facts(manifest("a"))
    assert not hasattr(facts, "__dict__")  # slots: no per-instance dict
    assert facts.uid == "uid-a" and facts.name == "a"


def test_equal_templates_are_one_object_and_different_ones_are_not() -> None:
    a, b, c = (JOB.facts(manifest(n, cpu)) for n, cpu in (("a", 0.5), ("b", 0.5), ("c", 2.0)))
    assert a.template is b.template
    assert a.template == {"nodeSelector": {"type": "kwok"},
                          "containers": [{"resources": {"requests": {"cpu": "0.5", "memory": "1Gi"}, "limits": {}}}]}
    assert c.template is not a.template
    assert c.template["containers"][0]["resources"]["requests"]["cpu"] == "2"


def test_the_shared_templates_are_bounded() -> None:
    first = jobs.shared_template({"nodeSelector": {"n": "0"}, "containers": []})
    for i in range(1, jobs.MAX_SHARED_TEMPLATES + 1):
        jobs.shared_template({"nodeSelector": {"n": str(i)}, "containers": []})
    assert len(jobs._SHARED_TEMPLATES) <= jobs.MAX_SHARED_TEMPLATES
    again = jobs.shared_template({"nodeSelector": {"n": "0"}, "containers": []})
    assert again == first and again is not first  # forgotten when the table started over
