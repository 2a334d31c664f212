"""Helm chart: lint, render every ci/ scenario, validate against the target
Kubernetes schemas, and check RBAC, security and wiring by value.

Needs helm and kubeconform (scripts/build-control-plane.sh helm kubeconform);
the kubeconform schemas are generated from the pinned k8s.io/kubernetes
module's OpenAPI document (see test_chart_tools.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from carbontrack.operator.workloads import default_registry
from test_chart_tools import (
    CHART,
    REPO,
    SCENARIOS,
    by_kind,
    helm_template,
    helm_template_error,
    helm_template_text,
    kubeconform,
    one,
    require_tool,
    run,
)

from carbontrack.core.owners import KINDS, Role

Doc = dict[str, Any]


@pytest.fixture(scope="module")
def default() -> list[Doc]:
    return helm_template()


def container(doc: Doc) -> Doc:
    containers = doc["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def rules_of(docs: list[Doc], name: str) -> list[Doc]:
    """Rules of the ClusterRole called exactly `name`."""
    roles = [r for r in by_kind(docs, "ClusterRole") if r["metadata"]["name"] == name]
    assert len(roles) == 1, f"no ClusterRole {name}"
    return list(roles[0]["rules"])


# ------------------------------------------------------------------ lint/render
def test_scenarios_exist() -> None:
    names = {p.name for p in SCENARIOS}
    assert {"default-values.yaml", "multipool-values.yaml", "namespaced-values.yaml",
            "monitoring-values.yaml", "podmonitor-values.yaml", "exporter-only-values.yaml"} <= names


@pytest.mark.parametrize("values", SCENARIOS, ids=lambda p: p.stem)
def test_helm_lint_strict(values: Path) -> None:
    helm = require_tool("helm")
    proc = run([helm, "lint", "--strict", CHART, "-f", values])
    assert "1 chart(s) linted, 0 chart(s) failed" in proc.stdout
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout


@pytest.mark.parametrize("values", SCENARIOS, ids=lambda p: p.stem)
def test_renders_and_validates_against_kubernetes_schemas(values: Path) -> None:
    text = helm_template_text(values=[values])
    results = kubeconform(text)
    kinds = {r["kind"] for r in results if r["status"] == "statusValid"}
    assert "DaemonSet" in kinds
    # Every rendered object was either validated or is a known non-core kind.
    docs = [d for d in yaml.safe_load_all(text) if d]
    assert len([r for r in results if r["status"] in ("statusValid", "statusSkipped")]) == len(docs)


# ------------------------------------------------------------------ CRDs
def test_chart_crds_identical_to_repo_crds() -> None:
    repo = {p.name: p.read_bytes() for p in (REPO / "crds").glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert repo, "repo crds/ is empty"
    assert chart == repo, "charts/carbontrack/crds/ differs from crds/: cp crds/*.yaml charts/carbontrack/crds/"


def test_crds_are_rendered_with_include_crds() -> None:
    docs = [d for d in yaml.safe_load_all(helm_template_text()) if d]
    names = {d["metadata"]["name"] for d in by_kind(docs, "CustomResourceDefinition")}
    assert "carbonbudgets.carbontrack.io" in names


def test_kopf_peering_crds_ship_and_serve_the_peering_objects_the_chart_creates() -> None:
    cluster = helm_template(values=[CHART / "ci" / "podmonitor-values.yaml"])
    namespaced = helm_template(values=[CHART / "ci" / "namespaced-values.yaml"])
    crds = {(d["spec"]["group"], v["name"], d["spec"]["names"]["kind"]): d["spec"]["scope"]
            for d in by_kind(cluster, "CustomResourceDefinition") for v in d["spec"]["versions"]}
    assert crds[("kopf.dev", "v1", "ClusterKopfPeering")] == "Cluster"
    assert crds[("kopf.dev", "v1", "KopfPeering")] == "Namespaced"
    peerings = by_kind(cluster, "ClusterKopfPeering") + by_kind(namespaced, "KopfPeering")
    assert len(peerings) >= 2
    for obj in peerings:  # every peering object the chart creates has its CRD in the chart
        group, version = obj["apiVersion"].split("/")
        assert (group, version, obj["kind"]) in crds


@pytest.mark.parametrize(("monitor", "interval", "seconds", "ok"), [
    ("serviceMonitor", "30s", 30, True), ("podMonitor", "1m", 60, True),
    ("podMonitor", "500ms", 0.5, True), ("serviceMonitor", "1h", 3600, True),
    ("serviceMonitor", "1m", 30, False), ("podMonitor", "15s", 30, False),
])
def test_monitor_interval_must_equal_the_operator_scrape_interval(
    monitor: str, interval: str, seconds: float, ok: bool,
) -> None:
    set_json = [f"{monitor}.enabled=true", f'{monitor}.interval="{interval}"',
                f"operator.scrapeIntervalSeconds={seconds}"]
    if ok:
        dep = one(helm_template(set_json=set_json), "Deployment", "operator")
        assert f"--scrape-interval={seconds:g}" in container(dep)["args"]
    else:
        err = helm_template_error(set_json=set_json)
        assert f"{monitor}.interval is {interval} but operator.scrapeIntervalSeconds is {seconds:g}" in err


# ------------------------------------------------------------------ exporter
def test_exporter_security_context_is_as_tight_as_rapl_allows(default: list[Doc]) -> None:
    ds = one(default, "DaemonSet", "exporter")
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is False and pod["hostPID"] is False and pod["hostIPC"] is False
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container(ds)["securityContext"]
    assert sc["privileged"] is False
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}  # nothing added back
    # uid 0 only as the owner of root-only energy_uj files (docs/helm.md).
    assert sc["runAsUser"] == 0


def test_exporter_host_mounts_read_only_except_state(default: list[Doc]) -> None:
    ds = one(default, "DaemonSet", "exporter")
    volumes = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["name"]: m for m in container(ds)["volumeMounts"]}
    host = {n: v["hostPath"]["path"] for n, v in volumes.items() if "hostPath" in v}
    assert host == {"host-sys": "/sys", "host-proc": "/proc", "state": "/var/lib/carbontrack",
                    "pod-resources": "/var/lib/kubelet/pod-resources"}
    writable = {n for n in host if not mounts[n].get("readOnly")}
    assert writable == {"state"}
    args = container(ds)["args"]
    assert args[:2] == ["exporter", "--node-name=$(NODE_NAME)"]
    assert {"--sysfs=/host/sys", "--procfs=/host/proc", "--state-dir=/var/lib/carbontrack",
            "--pod-resources-dir=/var/lib/kubelet/pod-resources", "--idle-policy=reserved"} <= set(args)
    assert not any(a.startswith(("--zone", "--pue", "--provider", "--retention")) for a in args)
    assert mounts["host-sys"]["mountPath"] == "/host/sys"
    # private propagation: containerd refuses HostToContainer from a private host /sys, and
    # the exporter reads only mounts present at start (docs/helm.md)
    assert not any("mountPropagation" in m for m in mounts.values())
    assert mounts["pod-resources"]["mountPath"] == "/var/lib/kubelet/pod-resources"


def test_exporter_scheduling_resources_and_priority(default: list[Doc]) -> None:
    ds = one(default, "DaemonSet", "exporter")
    pod = ds["spec"]["template"]["spec"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    pc = one(default, "PriorityClass")
    assert pod["priorityClassName"] == pc["metadata"]["name"]
    assert pc["value"] < 2000000000  # below system-node-critical
    assert container(ds)["resources"] == {"requests": {"cpu": "20m", "memory": "64Mi"},
                                          "limits": {"cpu": "200m", "memory": "128Mi"}}


def test_exporter_rbac_is_pods_and_its_node_read_only(default: list[Doc]) -> None:
    rules = rules_of(default, "ct-carbontrack-exporter")
    assert rules[:2] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
        # its own Node's labels and providerID give its grid zone (intensity.resolve)
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]},
    ]
    # the owners above its pods, read one by one (exporter/owners.py): get only, and exactly
    # the kinds the root-owner walk reads
    assert all(r["verbs"] == ["get"] for r in rules[2:])
    granted = {(g, res) for r in rules[2:] for g in r["apiGroups"] for res in r["resources"]}
    walked = {(i.group, i.plural) for i in KINDS.values() if i.role is not Role.BOUNDARY}
    assert walked <= granted
    assert {res for _, res in granted} == {p for _, p in walked}
    binding = one(default, "ClusterRoleBinding", "exporter")
    sa = one(default, "ServiceAccount", "exporter")
    ds = one(default, "DaemonSet", "exporter")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                    "namespace": "carbontrack"}]
    assert ds["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]


def test_pools_render_one_daemonset_each_with_their_zone_and_pue() -> None:
    docs = helm_template(values=[CHART / "ci" / "multipool-values.yaml"])
    gpu = one(docs, "DaemonSet", "exporter-gpu")
    cpu = one(docs, "DaemonSet", "exporter-cpu")
    assert gpu["spec"]["selector"] != cpu["spec"]["selector"]
    gargs, cargs = container(gpu)["args"], container(cpu)["args"]
    assert "--zone=DE" in gargs and "--pue=1.3" in gargs
    assert "--zone=US-CAL-CISO" in cargs and "--pue=1.15" in cargs  # cluster default PUE
    assert {"--provider=aws", "--region=eu-west-1"} <= set(gargs)
    assert cargs[-1] == "--no-nvml"
    assert gpu["spec"]["template"]["spec"]["runtimeClassName"] == "nvidia"
    assert "runtimeClassName" not in cpu["spec"]["template"]["spec"]
    assert gpu["spec"]["template"]["spec"]["nodeSelector"] == {"carbontrack.io/pool": "gpu"}
    tolerations = gpu["spec"]["template"]["spec"]["tolerations"]
    assert {"key": "dedicated", "operator": "Equal", "value": "training", "effect": "NoSchedule"} in tolerations
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerations
    env = {e["name"]: e for e in container(gpu)["env"]}
    assert env["ELECTRICITYMAPS_API_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": "carbontrack-electricitymaps", "key": "token"}}
    digest = "sha256:" + "0123456789abcdef" * 4
    assert container(gpu)["image"] == f"ghcr.io/carbontrack/exporter@{digest}"
    op = one(docs, "Deployment", "operator")
    assert container(op)["image"] == "ghcr.io/carbontrack/operator:0.1.0-rc1"


def test_intensity_values_become_the_exporter_flags_and_secret_env(default: list[Doc]) -> None:
    args = container(one(default, "DaemonSet", "exporter"))["args"]
    assert not [a for a in args if a.startswith(("--intensity", "--watttime", "--default-zone"))]
    docs = helm_template(set_json=[
        'exporter.intensity={"provider": "watttime", "baseUrl": "http://wt.proxy:8080",'
        ' "watttimeRegions": {"US-CAL-CISO": "CAISO_NORTH"}}',
        'exporter.defaultZone="DE"',
        'exporter.credentials=[{"env": "WATTTIME_USERNAME", "secretName": "wt", "secretKey": "u"},'
        ' {"env": "WATTTIME_PASSWORD", "secretName": "wt", "secretKey": "p"}]',
    ])
    c = container(one(docs, "DaemonSet", "exporter"))
    assert {"--intensity-provider=watttime", "--intensity-base-url=http://wt.proxy:8080",
            "--watttime-region=US-CAL-CISO=CAISO_NORTH", "--default-zone=DE"} <= set(c["args"])
    env = {e["name"]: e.get("valueFrom") for e in c["env"]}
    assert env["WATTTIME_PASSWORD"] == {"secretKeyRef": {"name": "wt", "key": "p"}}
    assert env["WATTTIME_USERNAME"] == {"secretKeyRef": {"name": "wt", "key": "u"}}
    err = helm_template_error(set_json=['exporter.intensity={"provider": "carbonapi"}'])
    assert "provider" in err


def test_exporter_only_scenario_is_non_root_without_rapl() -> None:
    docs = helm_template(values=[CHART / "ci" / "exporter-only-values.yaml"])
    assert sorted(d["kind"] for d in docs) == [
        "ClusterRole", "ClusterRoleBinding",
        # crds/ is installed whatever the values: CarbonBudget, CarbonRecord and kopf's two
        # peering CRDs
        "CustomResourceDefinition", "CustomResourceDefinition", "CustomResourceDefinition",
        "CustomResourceDefinition",
        "DaemonSet", "NetworkPolicy", "Service", "ServiceAccount"]
    ds = one(docs, "DaemonSet", "exporter")
    c = container(ds)
    assert c["securityContext"]["runAsUser"] == 65534 and c["securityContext"]["runAsNonRoot"] is True
    assert "--no-rapl" in c["args"] and "--zone=aws:us-east-1" in c["args"]
    assert not any(a.startswith("--pod-resources-dir") for a in c["args"])
    assert ds["spec"]["template"]["spec"]["priorityClassName"] == "node-monitoring"


# ------------------------------------------------------------------ operator
EXPECTED_OPERATOR_RULES = [
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "watch", "patch"]},
    # every finished-workload kind of the registry, with the verbs its adapter names
    *[{"apiGroups": [a.group], "resources": [a.plural], "verbs": list(a.rbac_verbs)}
      for a in default_registry() if a.kind != "Job"],
    {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets"], "verbs": ["get", "list"]},
    {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["list"]},
    {"apiGroups": ["leaderworkerset.x-k8s.io"], "resources": ["leaderworkersets"], "verbs": ["get", "list"]},
    {"apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices"], "verbs": ["get", "list"]},
    {"apiGroups": ["carbontrack.io"], "resources": ["carbonbudgets"], "verbs": ["get", "list", "watch", "patch"]},
    {"apiGroups": ["carbontrack.io"], "resources": ["carbonbudgets/status"], "verbs": ["get", "patch"]},
    {"apiGroups": ["carbontrack.io"], "resources": ["carbonrecords"],
     "verbs": ["get", "list", "watch", "create", "patch"]},
    {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
]


def test_operator_rbac_least_privilege(default: list[Doc]) -> None:
    assert rules_of(default, "ct-carbontrack-operator") == EXPECTED_OPERATOR_RULES
    assert rules_of(default, "ct-carbontrack-operator-cluster") == [
        {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["list", "watch"]},
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
    ]


def test_annotating_long_running_workloads_is_the_only_way_to_patch_them() -> None:
    """patch on Deployments cannot be limited to annotations (it would let the operator scale
    them), so only operator.longRunning.annotate grants it, and passes the flag."""
    assert "--annotate-long-running" not in container(one(helm_template(), "Deployment", "operator"))["args"]
    docs = helm_template(set_json=["operator.longRunning.annotate=true"])
    assert "--annotate-long-running" in container(one(docs, "Deployment", "operator"))["args"]
    patched = {tuple(r["resources"]) for r in rules_of(docs, "ct-carbontrack-operator")
               if "patch" in r["verbs"] and r["apiGroups"] != ["carbontrack.io"]}
    assert {("deployments", "statefulsets"), ("leaderworkersets",), ("inferenceservices",)} <= patched
    rules = rules_of(docs, "ct-carbontrack-operator")
    assert [r for r in rules if r["resources"] == ["deployments", "statefulsets"]] == [
        {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets"], "verbs": ["get", "list", "patch"]}]


def test_cluster_peering_adds_only_peering_rights_and_object() -> None:
    docs = helm_template(values=[CHART / "ci" / "podmonitor-values.yaml"])
    assert rules_of(docs, "ct-carbontrack-operator") == EXPECTED_OPERATOR_RULES
    assert rules_of(docs, "ct-carbontrack-operator-cluster")[2:] == [
        {"apiGroups": ["kopf.dev"], "resources": ["clusterkopfpeerings"], "verbs": ["get", "list", "watch", "patch"]},
    ]
    assert one(docs, "ClusterKopfPeering")["metadata"]["name"] == "carbontrack"
    dep = one(docs, "Deployment", "operator")
    assert "--peering=carbontrack" in container(dep)["args"] and "--standalone" not in container(dep)["args"]
    # RollingUpdate: kopf pauses the old and the new pod while both are up.
    assert dep["spec"]["replicas"] == 1 and "strategy" not in dep["spec"]
    err = helm_template_error(values=[CHART / "ci" / "podmonitor-values.yaml"], set_json=["operator.replicas=2"])
    assert "/operator/replicas" in err
    assert not by_kind(docs, "Service")


@pytest.mark.parametrize("values", SCENARIOS, ids=lambda p: p.stem)
def test_no_role_grants_secrets_wildcards_or_more_than_annotating_deployments(values: Path) -> None:
    docs = helm_template(values=[values])
    # the components' own roles; the budget-manager role is for people (tested below)
    roles = [r for r in by_kind(docs, "ClusterRole") + by_kind(docs, "Role")
             if not r["metadata"]["name"].endswith("-budget-manager")]
    for role in roles:
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
            assert "secrets" not in rule["resources"], role["metadata"]["name"]
            # Deployments: the operator lists them (long-running accounting; annotating is opt-in), the
            # exporter reads them as pods' owners (root-owner walk), never more
            if "deployments" in rule["resources"]:
                name = role["metadata"]["name"]
                assert (name.endswith("-operator") and rule["verbs"] == ["get", "list"]) or (
                    name.endswith("-exporter") and rule["verbs"] == ["get"])
            # create only Events and the operator's append-only records; never delete/update
            creatable = rule["resources"] in (["events"], ["carbonrecords"])
            assert not {"create", "delete", "deletecollection", "update", "escalate", "bind", "impersonate"} & (
                set(rule["verbs"]) - ({"create"} if creatable else set())
            ), rule


def test_user_roles_let_namespace_users_read_but_not_write_accounting_state(default: list[Doc]) -> None:
    roles = {r["metadata"]["name"].rsplit("-", 1)[-1]: r for r in by_kind(default, "ClusterRole")
             if r["metadata"]["name"].endswith(("-view", "-manager"))}
    view = roles["view"]
    assert {k for k, v in view["metadata"]["labels"].items() if v == "true"} >= {
        "rbac.authorization.k8s.io/aggregate-to-view", "rbac.authorization.k8s.io/aggregate-to-edit",
        "rbac.authorization.k8s.io/aggregate-to-admin"}
    assert view["rules"] == [{"apiGroups": ["carbontrack.io"],
                              "resources": ["carbonbudgets", "carbonbudgets/status", "carbonrecords"],
                              "verbs": ["get", "list", "watch"]}]
    manager = roles["manager"]
    assert not any(k.startswith("rbac.authorization.k8s.io/aggregate-to") for k in manager["metadata"]["labels"])
    assert manager["rules"] == [{"apiGroups": ["carbontrack.io"], "resources": ["carbonbudgets"],
                                 "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}]
    admin = helm_template(set_json=["userRbac.budgetsEditableByAdmin=true"])
    manager = one(admin, "ClusterRole", "-budget-manager")
    assert manager["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"


def test_admission_policies_exempt_only_the_operator_and_list_the_user_keys(default: list[Doc]) -> None:
    from carbontrack.operator.jobs import USER_ANNOTATIONS

    vap = one(default, "ValidatingAdmissionPolicy", "job-integrity")
    dep = one(default, "Deployment", "operator")
    sa = dep["spec"]["template"]["spec"]["serviceAccountName"]
    user = f"system:serviceaccount:{dep['metadata']['namespace']}:{sa}"
    assert vap["spec"]["matchConditions"] == [
        {"name": "not-the-operator", "expression": f"request.userInfo.username != '{user}'"}]
    keys = next(v["expression"] for v in vap["spec"]["variables"] if v["name"] == "userKeys")
    assert sorted(json.loads(keys)) == sorted(USER_ANNOTATIONS)
    binding = one(default, "ValidatingAdmissionPolicyBinding", "job-integrity")
    assert binding["spec"]["policyName"] == vap["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    mutating = one(default, "MutatingAdmissionPolicy", "hold-over-budget")
    assert mutating["spec"]["paramKind"] == {"apiVersion": "carbontrack.io/v1alpha1", "kind": "CarbonBudget"}
    assert mutating["spec"]["matchConstraints"]["resourceRules"][0]["operations"] == ["CREATE"]
    mbinding = one(default, "MutatingAdmissionPolicyBinding", "hold-over-budget")
    assert mbinding["spec"]["paramRef"] == {"selector": {}, "parameterNotFoundAction": "Allow"}
    # off for clusters older than 1.36 (mutating) / 1.30 (validating)
    off = helm_template(set_json=["admissionPolicies.mutating=false", "admissionPolicies.validating=false"])
    assert not [d for d in off if "AdmissionPolicy" in d["kind"]]
    namespaced = helm_template(values=[CHART / "ci" / "namespaced-values.yaml"])
    nb = one(namespaced, "ValidatingAdmissionPolicyBinding", "job-integrity")
    watched = yaml.safe_load((CHART / "ci" / "namespaced-values.yaml").read_text())
    assert nb["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"][0]["values"] == \
        watched["operator"]["watchNamespaces"]


def test_operator_pod_meets_restricted_pod_security(default: list[Doc]) -> None:
    dep = one(default, "Deployment", "operator")
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not any("hostPath" in v for v in pod["volumes"])
    assert not pod.get("hostNetwork") and not pod.get("hostPID")
    sc = container(dep)["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["readOnlyRootFilesystem"] is True
    probes = container(dep)
    assert probes["livenessProbe"]["httpGet"]["port"] == "http"
    assert probes["readinessProbe"]["httpGet"]["port"] == "http"


def test_operator_default_args_standalone_single_replica(default: list[Doc]) -> None:
    dep = one(default, "Deployment", "operator")
    args = container(dep)["args"]
    assert args == ["operator", "--prometheus-url=http://prometheus-operated.monitoring.svc:9090",
                    "--all-namespaces", "--standalone", "--scrape-interval=30", "--listen=0.0.0.0:8080"]
    # Without peering two replicas would both account: one, never overlapping.
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"] == {"type": "Recreate"}
    assert not by_kind(default, "ClusterKopfPeering")
    names = {b["metadata"]["name"] for b in by_kind(default, "ClusterRoleBinding")}
    assert {"ct-carbontrack-operator", "ct-carbontrack-operator-cluster"} <= names
    err = helm_template_error(set_json=["operator.replicas=2"])
    assert "replicas" in err


def test_watch_namespaces_bind_roles_only_there() -> None:
    docs = helm_template(values=[CHART / "ci" / "namespaced-values.yaml"])
    bindings = by_kind(docs, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    assert all(b["roleRef"]["name"] == "ct-carbontrack-operator" for b in bindings)
    crb = {b["metadata"]["name"] for b in by_kind(docs, "ClusterRoleBinding")}
    assert "ct-carbontrack-operator" not in crb  # workload rights are namespaced only
    peerings = by_kind(docs, "KopfPeering")
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["team-a", "team-b"]
    assert not by_kind(docs, "ClusterKopfPeering")
    kopf_rules = [r for r in rules_of(docs, "ct-carbontrack-operator") if r["apiGroups"] == ["kopf.dev"]]
    assert kopf_rules == [{"apiGroups": ["kopf.dev"], "resources": ["kopfpeerings"],
                           "verbs": ["get", "list", "watch", "patch"]}]
    args = container(one(docs, "Deployment", "operator"))["args"]
    assert {"--namespace=team-a", "--namespace=team-b", "--no-enforcement"} <= set(args)
    assert "--all-namespaces" not in args


# ------------------------------------------------------------------ monitoring
def test_service_monitors_select_the_services_ports() -> None:
    docs = helm_template(values=[CHART / "ci" / "monitoring-values.yaml"])
    services = {s["metadata"]["name"]: s for s in by_kind(docs, "Service")}
    for sm in by_kind(docs, "ServiceMonitor"):
        assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        matches = [s for s in services.values()
                   if sm["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
        assert len(matches) == 1, sm["metadata"]["name"]
        ports = {p["name"] for p in matches[0]["spec"]["ports"]}
        assert sm["spec"]["endpoints"][0]["port"] in ports
        assert sm["spec"]["endpoints"][0]["honorLabels"] is True
        assert sm["spec"]["endpoints"][0]["interval"] == "15s"
    assert len(by_kind(docs, "ServiceMonitor")) == 2


def test_pod_monitors_select_pods_with_named_ports() -> None:
    docs = helm_template(values=[CHART / "ci" / "podmonitor-values.yaml"])
    workloads = by_kind(docs, "DaemonSet") + by_kind(docs, "Deployment")
    pms = by_kind(docs, "PodMonitor")
    assert len(pms) == 2
    for pm in pms:
        sel = pm["spec"]["selector"]["matchLabels"].items()
        matched = [w for w in workloads if sel <= w["spec"]["template"]["metadata"]["labels"].items()]
        assert len(matched) == 1
        ports = {p["name"] for p in container(matched[0])["ports"]}
        assert pm["spec"]["podMetricsEndpoints"][0]["port"] in ports


def test_prometheusrule_and_rules_configmap_carry_the_rule_files() -> None:
    docs = helm_template(values=[CHART / "ci" / "monitoring-values.yaml"])
    files = {p.name: yaml.safe_load(p.read_text()) for p in sorted((CHART / "rules").glob("*.yaml"))}
    expected_groups = [g for f in files.values() for g in f["groups"]]
    assert one(docs, "PrometheusRule")["spec"]["groups"] == expected_groups
    cm = one(docs, "ConfigMap", "rules")
    assert {k: yaml.safe_load(v) for k, v in cm["data"].items()} == files


def test_dashboards_configmaps_for_grafana_sidecar(default: list[Doc]) -> None:
    cms = [c for c in by_kind(default, "ConfigMap") if "dashboard" in c["metadata"]["name"]]
    files = {p.name: p.read_text() for p in (CHART / "dashboards").glob("*.json")}
    assert {k for c in cms for k in c["data"]} == set(files)
    for cm in cms:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["annotations"] == {"grafana_folder": "CarbonTrack"}
        for name, body in cm["data"].items():
            assert json.loads(body) == json.loads(files[name])
            assert len(body.encode()) < 1024 * 1024 - 4096
    moved = helm_template(values=[CHART / "ci" / "monitoring-values.yaml"])
    namespaces = {
        c["metadata"]["namespace"] for c in by_kind(moved, "ConfigMap") if "dashboard" in c["metadata"]["name"]
    }
    assert namespaces == {"monitoring"}


# ------------------------------------------------------------------ values schema
@pytest.mark.parametrize(("set_json", "message"), [
    ('exporter.pue=0.5', "/exporter/pue"),
    ('exporter.port=70000', "/exporter/port"),
    ('exporter.pools=[{"zone":"DE"}]', "name"),
    ('exporter.pools=[]', "/exporter/pools"),
    ('exporter.intervalSeconds=0', "/exporter/intervalSeconds"),
    ('exporter.bogus=1', "bogus"),
    ('operator.prometheusUrl="prometheus:9090"', "/operator/prometheusUrl"),
    ('exporter.image.digest="latest"', "/exporter/image/digest"),
    ('exporter.credentials=[{"env":"TOKEN","secretName":"s"}]', "secretKey"),
    ('operator.watchNamespaces=["Team_A"]', "/operator/watchNamespaces"),
    ('exporter.provider="aws"', "/exporter/region"),
    ('exporter.idlePolicy="sometimes"', "/exporter/idlePolicy"),
    ('operator.replicas=3', "/operator/replicas"),
])
def test_values_schema_rejects_bad_values_naming_the_key(set_json: str, message: str) -> None:
    err = helm_template_error(set_json=[set_json])
    assert "values don't meet the specifications of the schema" in err
    assert message in err


def test_operator_mlflow_tracking_uri_is_passed_only_when_set(default: list[Doc]) -> None:
    assert not any(a.startswith("--mlflow") for a in container(one(default, "Deployment", "operator"))["args"])
    docs = helm_template(set_=["operator.mlflowTrackingUri=http://mlflow.ml.svc:5000"])
    assert "--mlflow-tracking-uri=http://mlflow.ml.svc:5000" in container(one(docs, "Deployment", "operator"))["args"]
    assert "/operator/mlflowTrackingUri" in helm_template_error(set_=["operator.mlflowTrackingUri=mlflow"])
