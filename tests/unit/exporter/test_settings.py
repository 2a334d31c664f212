"""Command-line settings: defaults, units, and one-line actionable errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from carbontrack.exporter.attribution import IdlePolicy
from carbontrack.exporter.settings import Settings, from_args

from carbontrack.core.errors import ConfigError


def test_contract_flags() -> None:
    s = from_args(["--node-name", "n1", "--sysfs", "/h/sys", "--procfs", "/h/proc",
                   "--interval", "2.5", "--listen", "127.0.0.1:9100", "--state-dir", "/st",
                   "--no-kube", "--zone", "DE", "--pue", "1.2", "--no-rapl", "--no-nvml",
                   "--no-estimate", "--pod-resources-dir", "/pr", "--idle-policy", "even",
                   "--retention", "120"])
    assert s == Settings(node_name="n1", sysfs=Path("/h/sys"), procfs=Path("/h/proc"),
                         interval_s=2.5, host="127.0.0.1", port=9100, state_dir=Path("/st"),
                         kube=False, zone="DE", pue=1.2, rapl=False, nvml=False,
                         estimate=False, pod_resources_dir=Path("/pr"),
                         idle_policy=IdlePolicy.EVEN, retention_s=120.0)


@pytest.mark.parametrize(("argv", "needle"), [
    (["--listen", "nonsense"], "--listen 'nonsense': expected HOST:PORT"),
    (["--interval", "0"], "--interval 0.0: must be a positive"),
    (["--provider", "aws"], "--provider and --region go together"),
    (["--retention", "-1"], "--retention -1.0: must be >= 0"),
])
def test_bad_flags_give_one_line_errors(argv: list[str], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        from_args(["--node-name", "n1", *argv])
    assert needle in str(err.value) and "\n" not in str(err.value)
