"""containerd for a real node: its config (pure, tested by equality), start, and image
import with ``ctr``.

Its root, state and socket live under the node's state dir. Two things of containerd 1.6
ignore configuration (docs/e2e.md, "What a real node changes on the host"): shim sockets in
/run/containerd/s and the CNI result cache in /var/lib/cni; hostchanges.py cleans them.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import TemporaryError

CNI_BIN_DIR = "/usr/lib/cni"  # Debian's containernetworking-plugins


@dataclass(frozen=True)
class ContainerdPaths:
    base: Path

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def state(self) -> Path:
        return self.base / "state"

    @property
    def socket(self) -> Path:
        return self.base / "containerd.sock"

    @property
    def config(self) -> Path:
        return self.base / "config.toml"

    @property
    def cni_conf_dir(self) -> Path:
        return self.base / "net.d"

    @property
    def runc_root(self) -> Path:
        return self.base / "runc"


def containerd_config(paths: ContainerdPaths, sandbox_image: str) -> str:
    """config.toml (version 2) for containerd 1.6 with the CRI plugin."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return "\n".join([
        "version = 2",
        f'root = "{paths.root}"',
        f'state = "{paths.state}"',
        # nothing here uses them; fewer plugins, fewer things to clean up
        'disabled_plugins = ["io.containerd.snapshotter.v1.aufs", '
        '"io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", '
        '"io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]',
        "[grpc]",
        f'  address = "{paths.socket}"',
        '[plugins."io.containerd.internal.v1.opt"]',
        f'  path = "{paths.base / "opt"}"',
        f"[{cri}]",
        f'  sandbox_image = "{sandbox_image}"',
        # This machine's capability bounding set lacks CAP_SYS_RESOURCE: runc cannot lower
        # oom_score_adj to the kubelet's -998 and every sandbox fails to start without it.
        "  restrict_oom_score_adj = true",
        f"[{cri}.containerd]",
        '  snapshotter = "overlayfs"',
        '  default_runtime_name = "runc"',
        f"[{cri}.containerd.runtimes.runc]",
        '  runtime_type = "io.containerd.runc.v2"',
        f"[{cri}.containerd.runtimes.runc.options]",
        "  SystemdCgroup = false",  # no systemd here; the kubelet uses cgroupfs too
        f'  Root = "{paths.runc_root}"',
        f"[{cri}.cni]",
        f'  bin_dir = "{CNI_BIN_DIR}"',
        f'  conf_dir = "{paths.cni_conf_dir}"',
        "",
    ])


def containerd_args(paths: ContainerdPaths) -> list[str]:
    return ["containerd", f"--config={paths.config}", "--log-level=warn"]


def ctr(paths: ContainerdPaths, *args: str, timeout_s: float = 300.0) -> str:
    """Run ``ctr`` against this containerd in the CRI namespace; return stdout."""
    argv = ["ctr", f"--address={paths.socket}", "--namespace=k8s.io", *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    if result.returncode != 0:
        raise TemporaryError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result.stdout


def image_present(paths: ContainerdPaths, ref: str) -> bool:
    return ref in ctr(paths, "images", "list", "--quiet").split()


def import_image(paths: ContainerdPaths, archive: Path, ref: str) -> None:
    """Import a ``docker save`` archive unless ``ref`` is already there."""
    if not image_present(paths, ref):
        ctr(paths, "images", "import", str(archive))


def image_digest(paths: ContainerdPaths, ref: str) -> str:
    """The manifest digest (``sha256:...``) containerd recorded when it imported ``ref``."""
    for line in ctr(paths, "images", "list").splitlines()[1:]:
        cols = line.split()  # REF TYPE DIGEST SIZE PLATFORMS LABELS
        if len(cols) >= 3 and cols[0] == ref and cols[2].startswith("sha256:"):
            return cols[2]
    raise TemporaryError(f"containerd has no image {ref} to read a digest from")


def pin_by_digest(paths: ContainerdPaths, ref: str) -> str:
    """Also name the imported image ``repository@digest``, as a registry pull would have
    recorded it, so that a pod may refer to it by digest (the chart's ``image.digest``): the
    CRI resolves a reference only among the names containerd holds. Returns the digest."""
    digest = image_digest(paths, ref)
    by_digest = f"{ref.rsplit(':', 1)[0]}@{digest}"
    if not image_present(paths, by_digest):
        ctr(paths, "images", "tag", ref, by_digest)
    return digest
