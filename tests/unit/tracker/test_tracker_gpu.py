"""`carbontrack run` with GPUs: the real pynvml bindings loading a fake libnvidia-ml.so.1
(compiled with gcc by sim.fakenvml) whose device state a file controls."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from carbontrack.sim.fakenvml import FakeGpu, FakeNvmlBuildError, build_fake_libnvml, write_state
from carbontrack.sim.powercap import FakePowercap

UUID = "GPU-11111111-2222-3333-4444-555555555555"


@pytest.fixture(scope="module")
def libdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        return build_fake_libnvml(tmp_path_factory.mktemp("nvml"))
    except FakeNvmlBuildError as err:  # a machine without gcc cannot build the fake driver
        pytest.skip(str(err))


def _run(tmp_path: Path, libdir: Path, child: str, *extra: str) -> subprocess.CompletedProcess[str]:
    sysfs = tmp_path / "sys"
    FakePowercap(sysfs).add_package(0, dram=False)  # CPU measured (and idle): only the GPU moves
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBONTRACK_")}
    env["LD_LIBRARY_PATH"] = str(libdir)
    env["CARBONTRACK_FAKE_NVML_STATE"] = str(tmp_path / "state")
    argv = [sys.executable, "-m", "carbontrack", "run", "--zone", "DE", "--scope", "machine",
            "--sysfs", str(sysfs), "--output", str(tmp_path), "--quiet", *extra,
            "--", sys.executable, "-c", child, str(tmp_path / "state")]  # fmt: skip
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)


def _doc(tmp_path: Path) -> dict[str, object]:
    (doc,) = tmp_path.glob("carbontrack-*.json")
    return json.loads(doc.read_text())  # type: ignore[no-any-return]


ADVANCE = (
    "import sys\n"
    "from carbontrack.sim.fakenvml import FakeGpu, write_state\n"
    f"write_state(sys.argv[1], [FakeGpu('{UUID}', energy_mj=1_000 + 12_000)])\n"
)


def test_gpu_energy_counter_is_measured_exactly(tmp_path: Path, libdir: Path) -> None:
    write_state(tmp_path / "state", [FakeGpu(UUID, energy_mj=1_000)])
    p = _run(tmp_path, libdir, ADVANCE)
    assert p.returncode == 0, p.stderr
    doc = _doc(tmp_path)
    assert doc["energy_j"] == {"cpu": 0.0, "gpu": 12.0}
    assert doc["method"] == "measured"
    host = doc["host"]
    assert isinstance(host, dict) and (host["gpu_count"], host["gpu_model"]) == (1, "NVIDIA H100 80GB HBM3")


def test_gpu_without_energy_counter_is_sampled_never_zero(tmp_path: Path, libdir: Path) -> None:
    write_state(tmp_path / "state", [FakeGpu(UUID, energy_supported=False, power_mw=50_000)])
    p = _run(tmp_path, libdir, "import time; time.sleep(0.5)")
    assert p.returncode == 0, p.stderr
    doc = _doc(tmp_path)
    assert doc["method"] == "sampled"
    energy = doc["energy_j"]
    assert isinstance(energy, dict) and energy["gpu"] > 0


def test_selecting_a_gpu_that_does_not_exist_is_a_one_line_error(tmp_path: Path, libdir: Path) -> None:
    write_state(tmp_path / "state", [FakeGpu(UUID)])
    p = _run(tmp_path, libdir, "pass", "--gpus", "3")
    assert p.returncode != 0
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("carbontrack run: error: "), p.stderr
    assert not list(tmp_path.glob("carbontrack-*.json"))


AMD_ADVANCE = (
    "import sys\n"
    "from carbontrack.sim.fakeamdsmi import FakeAmdGpu, counts_for_joules, write_state\n"
    "write_state(sys.argv[1], [FakeAmdGpu('0000:c1:00.0', 'u0', "
    "energy_counts=counts_for_joules(1.0 + 12.0))])\n"
)


def test_amd_gpu_is_found_and_measured_through_amdsmi(tmp_path: Path) -> None:
    """The tracker opens amdsmi where its library is present (here the fake under
    ROCM_PATH) and counts the accumulator's ticks x 15.3 uJ: 12 J, not 12 MJ."""
    from carbontrack.sim import fakeamdsmi

    try:
        root = fakeamdsmi.build_fake_libamdsmi(tmp_path / "amd-cache")
    except fakeamdsmi.FakeAmdSmiBuildError as err:
        pytest.skip(str(err))
    state = tmp_path / "state"
    fakeamdsmi.write_state(state, [fakeamdsmi.FakeAmdGpu(
        "0000:c1:00.0", "u0", energy_counts=fakeamdsmi.counts_for_joules(1.0))])
    sysfs = tmp_path / "sys"
    FakePowercap(sysfs).add_package(0, dram=False)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CARBONTRACK_") and k not in ("LD_LIBRARY_PATH", "ROCM_HOME")}
    env.update(ROCM_PATH=str(root), CARBONTRACK_FAKE_AMDSMI_STATE=str(state))
    argv = [sys.executable, "-m", "carbontrack", "run", "--zone", "DE", "--scope", "machine",
            "--sysfs", str(sysfs), "--output", str(tmp_path), "--quiet",
            "--", sys.executable, "-c", AMD_ADVANCE, str(state)]  # fmt: skip
    p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    doc = _doc(tmp_path)
    energy = doc["energy_j"]
    assert isinstance(energy, dict) and energy["cpu"] == 0.0
    assert energy["gpu"] == pytest.approx(12.0, abs=1e-4)
    assert doc["method"] == "measured"
