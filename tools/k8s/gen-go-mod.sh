#!/usr/bin/env bash
# Regenerate tools/k8s/go.mod for a Kubernetes version (maintainers only; the
# committed go.mod/go.sum are what builds use).
#
# k8s.io/kubernetes requires its staging modules (k8s.io/api, client-go, ...)
# at v0.0.0 and replaces them with ./staging paths that do not exist outside
# its own repo, so a dependent module must replace each one with the published
# v0.<minor>.<patch>. The list is taken from that version's own go.mod so it is
# never stale.   Usage: tools/k8s/gen-go-mod.sh v1.36.3
set -euo pipefail
version="${1:?usage: gen-go-mod.sh v1.MINOR.PATCH}"
here="$(cd "$(dirname "$0")" && pwd)"
staging_version="v0.${version#v1.}"
modfile="$(go mod download -json "k8s.io/kubernetes@$version" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
cd "$here"
rm -f go.mod go.sum
go mod init carbontrack.dev/tools/k8s >/dev/null
{
    echo
    echo "// Staging modules of k8s.io/kubernetes $version, pinned to $staging_version."
    echo "replace ("
    grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$modfile" \
        | awk -v v="$staging_version" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
} >>go.mod
go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@$version"
go get -tool "k8s.io/kubernetes/cmd/kube-controller-manager@$version"
go get -tool "k8s.io/kubernetes/cmd/kube-scheduler@$version"
# the real worker node (carbontrack.devcluster.realnode) and the demo's kubectl
go get -tool "k8s.io/kubernetes/cmd/kubelet@$version"
go get -tool "k8s.io/kubernetes/cmd/kubectl@$version"
go mod tidy
