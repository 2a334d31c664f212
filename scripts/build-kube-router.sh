#!/usr/bin/env bash
# Build (once) and cache kube-router, the NetworkPolicy enforcer of the real-node harness
# (carbontrack.devcluster.policyenforcer; only its network-policy controller runs).
#
# tools/kube-router/go.mod pins github.com/cloudnativelabs/kube-router/v2 v2.1.0, the only
# version the Go module proxy serves here. Security flaws are reported for v2.1.0: it is a
# test-harness component run on this machine against the local control plane, never part
# of the chart or the images (docs/e2e.md "NetworkPolicy enforcement").
# Cached outside the checkout like scripts/build-control-plane.sh's tools:
#     ${CARBONTRACK_CACHE_DIR:-~/.cache/carbontrack}/bin/kube-router-<version> (+ symlink kube-router)
# A warm run only checks that the file exists. Needs: go; at run time iptables and ipset.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$repo_root/tools/kube-router"
cache_root="${CARBONTRACK_CACHE_DIR:-$HOME/.cache/carbontrack}"
bin_dir="$cache_root/bin"
mkdir -p "$bin_dir"
export CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:--buildvcs=false} -mod=readonly"
log() {
    echo "build-kube-router: $*" >&2
    if [[ -n "${CARBONTRACK_BUILD_LOG:-}" ]]; then echo "$(date -u +%FT%TZ) $*" >>"$CARBONTRACK_BUILD_LOG"; fi
}
command -v go >/dev/null || { log "go is not on PATH"; exit 1; }

mod=github.com/cloudnativelabs/kube-router/v2
version="$(cd "$dir" && go list -m -f '{{.Version}}' "$mod")"
target="$bin_dir/kube-router-$version"
if [[ ! -x "$target" ]]; then
    tmp="$(mktemp -d "$bin_dir/.build-kube-router.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    start=$SECONDS
    log "kube-router $version building (cold)..."
    (cd "$dir" && go build -trimpath -ldflags "-s -w -X $mod/pkg/version.Version=$version" \
        -o "$tmp/kube-router" "$mod/cmd/kube-router")
    mv "$tmp/kube-router" "$target"
    log "kube-router $version built in $((SECONDS - start)) s"
else
    log "kube-router $version cached"
fi
ln -sfn "kube-router-$version" "$bin_dir/.kube-router.tmp.$$"
mv -T "$bin_dir/.kube-router.tmp.$$" "$bin_dir/kube-router"
