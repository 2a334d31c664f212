"""Helpers shared by the chart tests (unit and e2e), plus tests of the helpers.

Tools come from the harness build (scripts/build-control-plane.sh): helm and
kubeconform under ${CARBONTRACK_CACHE_DIR:-~/.cache/carbontrack}/bin, promtool
from Debian's `prometheus` package. In CI a missing tool fails the test with
the command that installs it; on a developer machine it skips with the same
message.

Kubernetes JSON schemas for kubeconform are generated offline from the
OpenAPI v2 document that ships inside the pinned k8s.io/kubernetes Go module
(api/openapi-spec/swagger.json, the same version tools/k8s builds), or from a
live kube-apiserver's /openapi/v2 (e2e). See docs/helm.md.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "carbontrack"
SCENARIOS = sorted((CHART / "ci").glob("*-values.yaml"))
# Kinds without a schema in the Kubernetes OpenAPI document: the Prometheus
# Operator's CRDs and kopf's peering CRDs. The chart tests check them
# structurally (and promtool checks the rule content).
NON_CORE_KINDS = ("ServiceMonitor", "PodMonitor", "PrometheusRule", "ClusterKopfPeering", "KopfPeering")

_INSTALL_HINT = {
    "helm": "scripts/build-control-plane.sh helm",
    "kubeconform": "scripts/build-control-plane.sh kubeconform",
    "promtool": "apt-get install -y prometheus",
    "go": "install Go (https://go.dev/dl)",
}


def cache_dir() -> Path:
    return Path(os.environ.get("CARBONTRACK_CACHE_DIR", Path.home() / ".cache" / "carbontrack"))


def kube_version() -> str:
    """The Kubernetes version the harness builds (tools/k8s/go.mod), e.g. '1.36.3'."""
    gomod = (REPO / "tools" / "k8s" / "go.mod").read_text()
    m = re.search(r"^\s*k8s\.io/kubernetes v(\d+\.\d+\.\d+)", gomod, re.MULTILINE)
    if not m:
        raise AssertionError("tools/k8s/go.mod pins no k8s.io/kubernetes version")
    return m.group(1)


def find_tool(name: str) -> Path | None:
    candidate = cache_dir() / "bin" / name
    if candidate.exists():
        return candidate
    found = shutil.which(name)
    return Path(found) if found else None


def require_tool(name: str) -> Path:
    """The tool's path; fails in CI (CI=true) and skips elsewhere when missing."""
    path = find_tool(name)
    if path is not None:
        return path
    msg = f"{name} not found in {cache_dir() / 'bin'} or on PATH; install it: {_INSTALL_HINT[name]}"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)
    raise AssertionError("unreachable")


def run(cmd: Sequence[str | Path], *, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, cmd))} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def helm_args(
    values: Iterable[Path] = (),
    set_json: Iterable[str] = (),
    set_: Iterable[str] = (),
    release: str = "ct",
    namespace: str = "carbontrack",
) -> list[str]:
    args = [release, str(CHART), "--namespace", namespace, "--kube-version", kube_version()]
    for v in values:
        args += ["-f", str(v)]
    for s in set_json:
        args += ["--set-json", s]
    for s in set_:
        args += ["--set", s]
    return args


def helm_template_text(**kw: Any) -> str:
    helm = require_tool("helm")
    # --include-crds: the CRDs are part of what gets validated.
    return run([helm, "template", *helm_args(**kw), "--include-crds"]).stdout


def helm_template_error(**kw: Any) -> str:
    """Render values that must be rejected; returns helm's error output."""
    helm = require_tool("helm")
    proc = run([helm, "template", *helm_args(**kw)], check=False)
    assert proc.returncode != 0, f"helm template accepted {kw}"
    return proc.stderr


def helm_template(**kw: Any) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(helm_template_text(**kw)) if d]


def by_kind(docs: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: Iterable[dict[str, Any]], kind: str, name_contains: str = "") -> dict[str, Any]:
    found = [d for d in by_kind(docs, kind) if name_contains in d["metadata"]["name"]]
    assert len(found) == 1, f"expected one {kind} named *{name_contains}*, got {len(found)}"
    return found[0]


# ---------------------------------------------------------------- schemas
def _kind_suffix(group: str, version: str) -> str:
    """kubeconform's file naming: Deployment apps/v1 -> deployment-apps-v1.json."""
    api_version = f"{group}/{version}" if group else version
    parts = api_version.split("/")
    suffix = "-" + parts[0].split(".")[0].lower()
    if len(parts) > 1:
        suffix += "-" + parts[1].lower()
    return suffix


def _rewrite(node: Any, strict: bool, seen: set[str]) -> Any:
    """Copy an OpenAPI v2 schema node into JSON Schema: local refs, strictness."""
    if isinstance(node, list):
        return [_rewrite(n, strict, seen) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties") and isinstance(value, dict):
            # A map of property names (one may be called "$ref") to schemas.
            out[key] = {k: _rewrite(v, strict, seen) for k, v in value.items()}
        elif key == "$ref" and isinstance(value, str):
            name = value.rsplit("/", 1)[-1]
            seen.add(name)
            out[key] = f"#/definitions/{name}"
        elif key == "format" and value == "int-or-string":
            continue
        else:
            out[key] = _rewrite(value, strict, seen)
    if node.get("format") == "int-or-string":
        out.pop("type", None)
        out["oneOf"] = [{"type": "string"}, {"type": "integer"}]
    if strict and "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


CONVERTER_REVISION = 1

# Quantities are strings in the OpenAPI document but YAML users write 1 or 0.5.
_LENIENT = {
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {"oneOf": [{"type": "string"}, {"type": "number"}]},
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
}


def convert_swagger(swagger: dict[str, Any], out_dir: Path, strict: bool = True) -> int:
    """Write one standalone JSON schema per kind (kubeconform's layout); returns the count."""
    defs: dict[str, Any] = dict(swagger["definitions"])
    defs.update(copy.deepcopy(_LENIENT))
    out_dir.mkdir(parents=True, exist_ok=True)
    written = 0
    for schema in defs.values():
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            needed: set[str] = set()
            root = _rewrite(schema, strict, needed)
            # Closure of the definitions this kind reaches (recursion-safe).
            closure: dict[str, Any] = {}
            todo = list(needed)
            while todo:
                dep = todo.pop()
                if dep in closure:
                    continue
                more: set[str] = set()
                closure[dep] = _rewrite(defs[dep], strict, more)
                todo.extend(more - closure.keys())
            root["definitions"] = closure
            # apiVersion/kind must name this very kind (catches e.g. apps/v1beta1).
            api_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
            props = root.setdefault("properties", {})
            props["apiVersion"] = {"type": "string", "enum": [api_version]}
            props["kind"] = {"type": "string", "enum": [gvk["kind"]]}
            fname = f"{gvk['kind'].lower()}{_kind_suffix(gvk['group'], gvk['version'])}.json"
            (out_dir / fname).write_text(json.dumps(root))
            written += 1
    return written


def swagger_from_module(version: str) -> Path:
    """api/openapi-spec/swagger.json of k8s.io/kubernetes@v<version> (Go module cache)."""
    go = require_tool("go")
    gomodcache = run([go, "env", "GOMODCACHE"]).stdout.strip()
    path = Path(gomodcache) / f"k8s.io/kubernetes@v{version}" / "api/openapi-spec/swagger.json"
    if not path.exists():
        # Outside any module, so it only fetches this module's zip.
        run([go, "mod", "download", f"k8s.io/kubernetes@v{version}"], cwd=tempfile.gettempdir(),
            env={**os.environ, "GOFLAGS": "-mod=mod"})
    assert path.exists(), f"{path} missing after go mod download"
    return path


def schema_root(version: str | None = None, swagger: Path | None = None) -> Path:
    """Directory for kubeconform -schema-location (cached, built once per version)."""
    version = version or kube_version()
    # Keyed by converter revision too, so a converter change never reuses stale files.
    root = cache_dir() / "kubeconform-schemas" / f"r{CONVERTER_REVISION}"
    target = root / f"v{version}-standalone-strict"
    if not (target / "deployment-apps-v1.json").exists():
        source = swagger or swagger_from_module(version)
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root))
        count = convert_swagger(json.loads(source.read_text()), tmp / "schemas")
        assert count > 50, f"only {count} kinds in {source}"
        if target.exists():
            shutil.rmtree(target)
        (tmp / "schemas").rename(target)
        shutil.rmtree(tmp)
    return root


def kubeconform(
    manifests: str, version: str | None = None, skip: Sequence[str] = NON_CORE_KINDS
) -> list[dict[str, Any]]:
    """Validate manifests strictly; returns kubeconform's per-resource results."""
    binary = require_tool("kubeconform")
    version = version or kube_version()
    root = schema_root(version)
    location = str(root) + (
        "/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}"
        "/{{ .ResourceKind }}{{ .KindSuffix }}.json"
    )
    cmd = [binary, "-strict", "-summary", "-output", "json", "-verbose",
           "-kubernetes-version", version, "-schema-location", location]
    if skip:
        cmd += ["-skip", ",".join(skip)]
    proc = run(cmd, check=False, input=manifests)
    report = json.loads(proc.stdout)
    bad = [r for r in report["resources"] if r["status"] not in ("statusValid", "statusSkipped", "statusEmpty", "")]
    assert proc.returncode == 0 and not bad, f"kubeconform: {json.dumps(bad, indent=1)}\n{proc.stderr}"
    return list(report["resources"])


# ---------------------------------------------------------------- self-tests
SAMPLE = {
    "definitions": {
        "io.k8s.api.apps.v1.Thing": {
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                "spec": {"$ref": "#/definitions/io.k8s.api.apps.v1.Spec"},
            },
            "x-kubernetes-group-version-kind": [{"group": "apps", "kind": "Thing", "version": "v1"}],
        },
        "io.k8s.api.apps.v1.Spec": {
            "type": "object",
            "properties": {
                "port": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.util.intstr.IntOrString"},
                "child": {"$ref": "#/definitions/io.k8s.api.apps.v1.Spec"},
            },
        },
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"type": "string", "format": "int-or-string"},
    }
}


def test_convert_swagger_names_files_like_kubeconform_and_closes_refs(tmp_path: Path) -> None:
    assert convert_swagger(SAMPLE, tmp_path) == 1
    schema = json.loads((tmp_path / "thing-apps-v1.json").read_text())
    assert schema["properties"]["spec"] == {"$ref": "#/definitions/io.k8s.api.apps.v1.Spec"}
    spec = schema["definitions"]["io.k8s.api.apps.v1.Spec"]
    # Recursive reference kept as a local ref, strict mode closes objects.
    assert spec["properties"]["child"] == {"$ref": "#/definitions/io.k8s.api.apps.v1.Spec"}
    assert spec["additionalProperties"] is False
    assert schema["definitions"]["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] == {
        "oneOf": [{"type": "string"}, {"type": "integer"}]
    }
    assert schema["properties"]["kind"] == {"type": "string", "enum": ["Thing"]}


def test_kind_suffix_matches_kubeconform_layout() -> None:
    assert _kind_suffix("", "v1") == "-v1"
    assert _kind_suffix("apps", "v1") == "-apps-v1"
    assert _kind_suffix("rbac.authorization.k8s.io", "v1") == "-rbac-v1"


def test_kubeconform_rejects_unknown_field_and_wrong_kind_version() -> None:
    bad_field = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\nbogus: 1\n"
    with pytest.raises(AssertionError, match="bogus"):
        kubeconform(bad_field)
    bad_version = "apiVersion: apps/v1beta1\nkind: Deployment\nmetadata: {name: x}\n"
    with pytest.raises(AssertionError, match=r"statusError|statusInvalid"):
        kubeconform(bad_version)
    good = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\n"
    assert [r["status"] for r in kubeconform(good)] == ["statusValid"]
