#!/usr/bin/env bash
# Build (once) and cache the binaries of the local control plane used by
# tests/e2e and `make demo`: helm, kubeconform, etcd, kwok, kube-apiserver,
# kube-controller-manager, kube-scheduler, and for the real worker node kubelet
# (plus kubectl, which the demo tells users to run), and Kueue's manager.
#
# Every tool is a small Go module under tools/<name>/ whose go.mod/go.sum pin
# the exact version, so the build is reproducible from the repo through the Go
# module proxy alone. Binaries are cached OUTSIDE the checkout, keyed by
# version:
#     ${CARBONTRACK_CACHE_DIR:-~/.cache/carbontrack}/bin/<name>-<version>
# plus a stable symlink .../bin/<name> that other tools and helpers use.
# A warm run only checks that the files exist (well under a second per tool).
#
# Usage: scripts/build-control-plane.sh [TOOL...]   (default: all, in order)
#        TOOL is one of: helm kubeconform etcd kwok k8s kueue training-operator jobset trainer
# Env:   CARBONTRACK_CACHE_DIR  cache root (default ~/.cache/carbontrack)
#        CARBONTRACK_BUILD_LOG  append timings here (default: stderr only)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="$repo_root/tools"
cache_root="${CARBONTRACK_CACHE_DIR:-$HOME/.cache/carbontrack}"
bin_dir="$cache_root/bin"
mkdir -p "$bin_dir" "$cache_root/share"

# Pure-Go static binaries: no C toolchain needed, and -trimpath keeps the
# output independent of where the checkout lives.
export CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
# Cold builds must not touch the checkout's go.mod files (CI clones are
# read-only in spirit): the pinned go.sum is authoritative.
export GOFLAGS="$GOFLAGS -mod=readonly"

die() { echo "build-control-plane: $*" >&2; exit 1; }

# Half-built output never lands under a final name (builds write to a temp dir
# and rename); an interrupted build must not leave its temp dir behind either.
tmp_dirs=()
cleanup() { if ((${#tmp_dirs[@]})); then rm -rf "${tmp_dirs[@]}"; fi; }
trap cleanup EXIT
command -v go >/dev/null || die "go is not on PATH; install Go >= 1.24 (https://go.dev/dl) and retry"

log() {
    echo "build-control-plane: $*" >&2
    if [[ -n "${CARBONTRACK_BUILD_LOG:-}" ]]; then echo "$(date -u +%FT%TZ) $*" >>"$CARBONTRACK_BUILD_LOG"; fi
}

# module_version DIR MODULE -> the version pinned in DIR/go.mod
module_version() {
    (cd "$1" && go list -m -f '{{.Version}}' "$2")
}

# link NAME VERSION: stable name -> versioned file (atomic rename of a symlink)
link() {
    ln -sfn "$1-$2" "$bin_dir/.$1.tmp.$$"
    mv -T "$bin_dir/.$1.tmp.$$" "$bin_dir/$1"
}

# link_share NAME VERSION: <cache>/share/NAME -> NAME-VERSION (data kept beside a binary)
link_share() {
    ln -sfn "$1-$2" "$cache_root/share/.$1.tmp.$$"
    mv -T "$cache_root/share/.$1.tmp.$$" "$cache_root/share/$1"
}

# build_one NAME MODULE_DIR GO_MODULE PACKAGE [LDFLAGS]
build_one() {
    local name="$1" dir="$2" mod="$3" pkg="$4" ldflags="${5:-}"
    local version; version="$(module_version "$dir" "$mod")"
    local target="$bin_dir/$name-$version"
    if [[ -x "$target" ]]; then
        link "$name" "$version"
        log "$name $version cached"
        return
    fi
    local tmp; tmp="$(mktemp -d "$bin_dir/.build-$name.XXXXXX")"; tmp_dirs+=("$tmp")
    local start=$SECONDS
    log "$name $version building (cold)..."
    (cd "$dir" && go build -trimpath -ldflags "-s -w $ldflags" -o "$tmp/$name" "$pkg")
    mv "$tmp/$name" "$target"
    link "$name" "$version"
    log "$name $version built in $((SECONDS - start)) s"
}

build_helm() {
    local v; v="$(module_version "$tools_dir/helm" helm.sh/helm/v3)"
    build_one helm "$tools_dir/helm" helm.sh/helm/v3 helm.sh/helm/v3/cmd/helm \
        "-X helm.sh/helm/v3/internal/version.version=$v"
}
build_kubeconform() {
    build_one kubeconform "$tools_dir/kubeconform" github.com/yannh/kubeconform \
        github.com/yannh/kubeconform/cmd/kubeconform
}
build_etcd() {
    # etcd's server module has no main package at a stable path:
    # tools/etcd/main.go is the three-line etcdmain.Main wrapper.
    build_one etcd "$tools_dir/etcd" go.etcd.io/etcd/server/v3 .
}
# Kueue's manager (queueing and admission of Jobs and other workloads); its
# module has no replace directives, so the tool module pins it directly. Its
# CRDs and webhook list come from the same module source and are kept beside
# the binary (<cache>/share/kueue-<version>/), so tests need no Go at run time.
build_kueue() {
    local dir="$tools_dir/kueue"
    local version; version="$(module_version "$dir" sigs.k8s.io/kueue)"
    build_one kueue "$dir" sigs.k8s.io/kueue sigs.k8s.io/kueue/cmd/kueue \
        "-X sigs.k8s.io/kueue/pkg/version.GitVersion=$version"
    local share="$cache_root/share/kueue-$version"
    if [[ -f "$share/webhooks.yaml" ]]; then link_share kueue "$version"; return; fi
    local src; src="$(cd "$dir" && go list -m -f '{{.Dir}}' sigs.k8s.io/kueue)"
    local tmp; tmp="$(mktemp -d "$cache_root/share/.kueue.XXXXXX")"; tmp_dirs+=("$tmp")
    mkdir -p "$tmp/crd"
    cp "$src"/config/components/crd/bases/*.yaml "$tmp/crd/"
    cp "$src/config/components/webhook/manifests.yaml" "$tmp/webhooks.yaml"
    chmod -R u+w "$tmp"; chmod 755 "$tmp"
    rm -rf "$share"; mv "$tmp" "$share"
    link_share kueue "$version"
    log "kueue $version CRDs and webhooks copied to $share"
}
# The Kubeflow training-operator v1 (PyTorchJob and the other Kubeflow v1 kinds), run by
# the workload e2e tests, and the workload CRDs they install: the training-operator's own
# (its module's manifests/base/crds) and JobSet's, Kubeflow Trainer's (TrainJob) and KubeRay's
# (RayJob, RayCluster) from the modules pinned in tools/workload-crds (sources only, nothing
# built). The CRDs are kept in <cache>/share/workload-crds-<key>/, keyed by the
# training-operator version and tools/workload-crds/go.sum.
build_training_operator() {
    local dir="$tools_dir/training-operator" crds="$tools_dir/workload-crds"
    local version; version="$(module_version "$dir" github.com/kubeflow/training-operator)"
    build_one training-operator "$dir" github.com/kubeflow/training-operator \
        github.com/kubeflow/training-operator/cmd/training-operator.v1
    local key; key="$version-$(sha256sum "$crds/go.sum" | cut -c1-12)"
    local share="$cache_root/share/workload-crds-$key"
    if [[ -f "$share/.complete" ]]; then link_share workload-crds "$key"; return; fi
    mkdir -p "$cache_root/share"
    local tmp; tmp="$(mktemp -d "$cache_root/share/.workload-crds.XXXXXX")"; tmp_dirs+=("$tmp")
    local src
    src="$(cd "$dir" && go list -m -f '{{.Dir}}' github.com/kubeflow/training-operator)"
    cp "$src/manifests/base/crds/kubeflow.org_pytorchjobs.yaml" "$tmp/"
    (cd "$crds" && go mod download sigs.k8s.io/jobset github.com/kubeflow/trainer/v2 \
        github.com/ray-project/kuberay/ray-operator)
    src="$(cd "$crds" && go list -m -f '{{.Dir}}' sigs.k8s.io/jobset)"
    cp "$src/config/components/crd/bases/jobset.x-k8s.io_jobsets.yaml" "$tmp/"
    src="$(cd "$crds" && go list -m -f '{{.Dir}}' github.com/kubeflow/trainer/v2)"
    cp "$src/manifests/base/crds/trainer.kubeflow.org_trainjobs.yaml" "$tmp/"
    src="$(cd "$crds" && go list -m -f '{{.Dir}}' github.com/ray-project/kuberay/ray-operator)"
    cp "$src/config/crd/bases/ray.io_rayjobs.yaml" "$src/config/crd/bases/ray.io_rayclusters.yaml" "$tmp/"
    chmod -R u+w "$tmp"; chmod 755 "$tmp"; touch "$tmp/.complete"
    rm -rf "$share"; mv "$tmp" "$share"
    link_share workload-crds "$key"
    log "workload CRDs ($(ls "$share" | tr '\n' ' ')) copied to $share"
}
# The JobSet controller (sigs.k8s.io/jobset; main package at the module root), run by the
# workload e2e tests; same version as the JobSet CRD in tools/workload-crds.
build_jobset() {
    build_one jobset "$tools_dir/jobset" sigs.k8s.io/jobset sigs.k8s.io/jobset
}
# The Kubeflow Trainer v2 controller manager (cmd/trainer-controller-manager), run by the
# workload e2e tests. It creates JobSets of API jobset.x-k8s.io/v1alpha2 and its module
# requires sigs.k8s.io/jobset v0.8.2, the version of tools/jobset. Its three CRDs (TrainJob,
# TrainingRuntime, ClusterTrainingRuntime) are copied from the same module source into
# <cache>/share/trainer-crds-<version>/; the TrainJob CRD of tools/workload-crds must be the
# same version (checked here).
build_trainer() {
    local dir="$tools_dir/trainer" mod=github.com/kubeflow/trainer/v2
    local version; version="$(module_version "$dir" "$mod")"
    local pinned; pinned="$(module_version "$tools_dir/workload-crds" "$mod")"
    [[ "$version" == "$pinned" ]] || die "tools/trainer pins $mod $version but tools/workload-crds pins $pinned"
    build_one trainer "$dir" "$mod" "$mod/cmd/trainer-controller-manager"
    local share="$cache_root/share/trainer-crds-$version"
    if [[ -f "$share/.complete" ]]; then link_share trainer-crds "$version"; return; fi
    local tmp; tmp="$(mktemp -d "$cache_root/share/.trainer-crds.XXXXXX")"; tmp_dirs+=("$tmp")
    (cd "$dir" && go mod download "$mod")
    local src; src="$(cd "$dir" && go list -m -f '{{.Dir}}' "$mod")"
    local kind
    for kind in trainjobs trainingruntimes clustertrainingruntimes; do
        cp "$src/manifests/base/crds/trainer.kubeflow.org_$kind.yaml" "$tmp/"
    done
    chmod -R u+w "$tmp"; chmod 755 "$tmp"; touch "$tmp/.complete"
    rm -rf "$share"; mv "$tmp" "$share"
    link_share trainer-crds "$version"
    log "trainer CRDs ($(ls "$share" | tr '\n' ' ')) copied to $share"
}
build_kwok() {
    local v; v="$(module_version "$tools_dir/kwok" sigs.k8s.io/kwok)"
    build_one kwok "$tools_dir/kwok" sigs.k8s.io/kwok sigs.k8s.io/kwok/cmd/kwok \
        "-X sigs.k8s.io/kwok/pkg/consts.Version=$v"
}

# The Kubernetes binaries are built by ONE `go build` so the ~2000 shared
# packages compile once (the dominant cost of a cold build). A cache that has
# some of them (say the control plane from before kubelet was added) builds
# only the missing ones, still reusing Go's build cache.
build_k8s() {
    local dir="$tools_dir/k8s"
    local version; version="$(module_version "$dir" k8s.io/kubernetes)"
    local names=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)
    local missing=() n
    for n in "${names[@]}"; do [[ -x "$bin_dir/$n-$version" ]] || missing+=("$n"); done
    if ((${#missing[@]} == 0)); then
        for n in "${names[@]}"; do link "$n" "$version"; done
        log "kubernetes $version cached"
        return
    fi
    # /version must report the real version, not v0.0.0: set it in
    # component-base (servers) and client-go (clients inside the binaries).
    local minor="${version#v1.}"; minor="${minor%%.*}"
    local commit; commit="$(cd "$dir" && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
    local vars="gitVersion=$version gitMajor=1 gitMinor=$minor gitTreeState=clean buildDate=1970-01-01T00:00:00Z gitCommit=$commit"
    local ldflags="" var p
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        for var in $vars; do ldflags="$ldflags -X $p.$var"; done
    done
    local tmp; tmp="$(mktemp -d "$bin_dir/.build-k8s.XXXXXX")"; tmp_dirs+=("$tmp")
    local start=$SECONDS pkgs=()
    for n in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$n"); done
    log "kubernetes $version building ${missing[*]} (cold, the long one)..."
    (cd "$dir" && go build -trimpath -ldflags "-s -w $ldflags" -o "$tmp/" "${pkgs[@]}")
    for n in "${missing[@]}"; do mv "$tmp/$n" "$bin_dir/$n-$version"; done
    for n in "${names[@]}"; do link "$n" "$version"; done
    log "kubernetes $version built ${missing[*]} in $((SECONDS - start)) s"
}

# Kueue is built after the Kubernetes binaries: only the Kueue e2e tests need it.
# Order matters for people waiting: helm and kubeconform are small and needed
# by the chart tests; the Kubernetes build is the long pole, so it goes last.
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(helm kubeconform etcd kwok k8s kueue training-operator jobset trainer)
for t in "${targets[@]}"; do
    case "$t" in
        helm|kubeconform|etcd|kwok|k8s|kueue) "build_$t" ;;
        training-operator) build_training_operator ;;
        jobset) build_jobset ;;
        trainer) build_trainer ;;
        *) die "unknown tool '$t' (expected helm, kubeconform, etcd, kwok, k8s, kueue, training-operator, jobset or trainer)" ;;
    esac
done
