#!/usr/bin/env bash
# One-time (idempotent) set-up of a fresh machine for CarbonTrack development, the demo and CI:
# Debian packages, the Python package with its test extras, and the local control plane's
# binaries (built from Go modules, cached outside the checkout). Safe to re-run: each step
# is skipped when already satisfied.
#
#   CARBONTRACK_INSTALL=wheel   install the package non-editably (CI tests the installed wheel)
#   CARBONTRACK_SKIP_CLUSTER=1  skip building the control plane (unit tests only)
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v gcc >/dev/null || need_apt+=(gcc libc6-dev)
command -v prometheus >/dev/null || need_apt+=(prometheus)
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v make >/dev/null || need_apt+=(make)
command -v setpriv >/dev/null || need_apt+=(util-linux)
# The HTML report tests render pages in a headless browser.
command -v chromium-headless-shell >/dev/null || command -v chromium >/dev/null || need_apt+=(chromium-headless-shell)
# The real worker node (carbontrack.devcluster.realnode): container runtime, CNI plugins,
# the iptables rule that stands in for kube-proxy, and Debian root filesystems for images.
command -v containerd >/dev/null || need_apt+=(containerd)
command -v runc >/dev/null || need_apt+=(runc)
[ -x /usr/lib/cni/bridge ] || need_apt+=(containernetworking-plugins)
command -v iptables >/dev/null || need_apt+=(iptables)
command -v mmdebstrap >/dev/null || need_apt+=(mmdebstrap)
# kube-router's NetworkPolicy controller on the real node (policyenforcer.py) keeps its sets there.
command -v ipset >/dev/null || need_apt+=(ipset)
if ((${#need_apt[@]})); then
  echo "setup: installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # Debian's packages start a system Prometheus on :9090 and a system containerd; the
  # harness runs its own of each.
  $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
  $SUDO systemctl disable --now containerd >/dev/null 2>&1 || true
fi

PYTHON=${PYTHON:-python3}
extras="dev,mlflow,wandb"
stamp=".setup-stamp"
want="$(cat pyproject.toml setup.py | sha256sum | cut -c1-16)-${CARBONTRACK_INSTALL:-editable}"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing carbontrack[$extras] (${CARBONTRACK_INSTALL:-editable})"
  $PYTHON -m pip install -q --upgrade pip "setuptools>=68" wheel
  if [ "${CARBONTRACK_INSTALL:-editable}" = "wheel" ]; then
    $PYTHON -m pip install -q ".[$extras]"
  else
    $PYTHON -m pip install -q -e ".[$extras]"
  fi
  # Tests compare our CSV header with the installed CodeCarbon's own column list; only
  # the package's files are needed, not its dependency tree.
  $PYTHON -m pip install -q --no-deps codecarbon==3.3.2
  echo "$want" > "$stamp"
fi

if [ "${CARBONTRACK_SKIP_CLUSTER:-0}" != "1" ]; then
  scripts/build-control-plane.sh
  scripts/build-kube-router.sh  # the real node's NetworkPolicy enforcer (a test-harness part)
fi
