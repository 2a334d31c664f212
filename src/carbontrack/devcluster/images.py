"""Container images without Docker: layers as plain tar files, packed into a
``docker save`` archive (manifest.json + config + layer tars) that
``ctr images import`` reads.

Everything here is deterministic (sorted entries, fixed mtimes and owners), so the
same inputs give the same image digest and a cache keyed by content stays valid.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# A fixed timestamp for every file and the image's "created": reproducible digests.
EPOCH = 0


@dataclass(frozen=True)
class ImageConfig:
    """The runtime part of an image's config (what a Dockerfile's ENV/USER/... say)."""

    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...] = ()
    user: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    exposed_ports: tuple[int, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    working_dir: str = ""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def config_json(cfg: ImageConfig, diff_ids: Sequence[str]) -> bytes:
    """The image config document (OCI image spec / Docker v2 schema), keys sorted."""
    config: dict[str, object] = {"Env": [f"{k}={v}" for k, v in cfg.env.items()]}
    if cfg.entrypoint:
        config["Entrypoint"] = list(cfg.entrypoint)
    if cfg.cmd:
        config["Cmd"] = list(cfg.cmd)
    if cfg.user:
        config["User"] = cfg.user
    if cfg.exposed_ports:
        config["ExposedPorts"] = {f"{p}/tcp": {} for p in cfg.exposed_ports}
    if cfg.labels:
        config["Labels"] = dict(cfg.labels)
    if cfg.working_dir:
        config["WorkingDir"] = cfg.working_dir
    doc = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{d}" for d in diff_ids]},
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def manifest_json(repo_tag: str, config_name: str, layer_names: Sequence[str]) -> bytes:
    return json.dumps(
        [{"Config": config_name, "RepoTags": [repo_tag], "Layers": list(layer_names)}],
        separators=(",", ":"),
    ).encode()


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime = EPOCH
    info.uname = info.gname = ""
    return info


def tree_layer(root: Path, out: Path, *, owner: tuple[int, int] = (0, 0)) -> Path:
    """A layer tar of everything under ``root`` (paths relative to it), sorted, with fixed
    mtimes and every file owned by ``owner``: the image's files are root's, not whoever
    built them."""
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = sorted(p for p in root.rglob("*"))
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for p in paths:
            info = tar.gettarinfo(str(p), arcname=p.relative_to(root).as_posix())
            info.uid, info.gid = owner
            _normalise(info)
            if info.isfile():
                with p.open("rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return out


def write_docker_archive(
    out: Path, repo_tag: str, cfg: ImageConfig, layers: Sequence[Path]
) -> str:
    """Write a ``docker save`` archive of ``layers`` (uncompressed tars, base first) and
    return the config digest (the image ID). Written to a temp name, then renamed."""
    diff_ids = [sha256_file(layer) for layer in layers]
    config = config_json(cfg, diff_ids)
    config_id = hashlib.sha256(config).hexdigest()
    layer_names = [f"{d}/layer.tar" for d in diff_ids]
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:

        def add_bytes(name: str, data: bytes) -> None:
            info = _normalise(tarfile.TarInfo(name))
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add_bytes(f"{config_id}.json", config)
        for name, layer in zip(layer_names, layers, strict=True):
            tar.add(str(layer), arcname=name, filter=_normalise)
        add_bytes("manifest.json", manifest_json(repo_tag, f"{config_id}.json", layer_names))
    tmp.replace(out)
    return config_id
