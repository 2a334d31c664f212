"""The Kubeflow Trainer v2 harness pieces that need no cluster (devcluster/trainer.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from carbontrack.core.errors import ConfigError
from carbontrack.devcluster import trainer
from carbontrack.devcluster.trainer import ensure_trainer, trainer_argv, trainer_tools

TOOLS = Path(__file__).resolve().parents[2] / "tools"


def pinned(go_mod: str, module: str) -> list[str]:
    return [line.split()[1] for line in (TOOLS / go_mod).read_text().splitlines()
            if line.strip().startswith(f"{module} v")]


def test_command_line_runs_niced_with_no_fixed_ports_and_no_leader_election() -> None:
    assert trainer_argv(Path("/c/bin/trainer"), 40125) == [
        "nice", "-n", "10", "/c/bin/trainer", "--webhook-server-port=40125", "--metrics-bind-address=0",
        "--health-probe-bind-address=0", "--leader-elect=false", "--zap-log-level=info"]


def test_tools_are_found_in_the_cache_and_need_the_complete_marker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {"CARBONTRACK_CACHE_DIR": str(tmp_path)}
    tools = trainer_tools(env)
    assert tools.binary == tmp_path / "bin" / "trainer"
    tools.binary.parent.mkdir(parents=True)
    tools.binary.write_text("")
    os.chmod(tools.binary, 0o755)
    tools.crd_dir.mkdir(parents=True)
    for name in ("b.yaml", "a.yaml"):
        (tools.crd_dir / name).write_text("")
    assert not tools.ready()  # a copy cut short is not used
    with monkeypatch.context() as patch:  # no checkout to build from: a clear error, no build
        patch.setattr(trainer, "repo_root", lambda cwd=None: None)
        with pytest.raises(ConfigError, match=r"build-control-plane\.sh trainer"):
            ensure_trainer(env=env)
    (tools.crd_dir / ".complete").write_text("")
    assert ensure_trainer(env=env) == tools  # warm: nothing is built
    assert tools.crds() == [tools.crd_dir / "a.yaml", tools.crd_dir / "b.yaml"]


def test_the_trainer_is_the_version_of_its_trainjob_crd_and_runs_our_jobset_version() -> None:
    version = pinned("trainer/go.mod", "github.com/kubeflow/trainer/v2")
    assert version == pinned("workload-crds/go.mod", "github.com/kubeflow/trainer/v2") == ["v2.0.0"]
    # the JobSets it creates are run by the JobSet controller of tools/jobset
    assert pinned("trainer/go.mod", "sigs.k8s.io/jobset") == pinned("jobset/go.mod", "sigs.k8s.io/jobset")
