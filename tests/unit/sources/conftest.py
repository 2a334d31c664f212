"""Fixtures for the NVML tests: the fake libnvidia-ml.so.1, compiled once per session and
loaded into this process so that the real pynvml bindings call it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import ModuleType

import pytest

from carbontrack.sim.fakenvml import (
    STATE_ENV,
    FakeGpu,
    FakeGpuProcess,
    build_fake_libnvml,
    load_in_process,
    write_state,
)

FAKE_DRIVER = "550.54.15-carbontrack-fake"


@pytest.fixture(scope="session")
def fake_nvml_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fake_libnvml(tmp_path_factory.mktemp("fakenvml-cache"))


@pytest.fixture
def nvml_state(fake_nvml_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Returns ``set_state(gpus, processes=())``; the fake library reads it on every call."""
    path = tmp_path / "nvml-state"
    monkeypatch.setenv(STATE_ENV, str(path))

    def set_state(gpus: Sequence[FakeGpu], processes: Iterable[FakeGpuProcess] = (), **kw: int) -> None:
        write_state(path, gpus, processes, driver_version=FAKE_DRIVER, **kw)

    set_state([])
    yield set_state


@pytest.fixture
def pynvml(fake_nvml_dir: Path, nvml_state: Callable[..., None]) -> ModuleType:
    """The real pynvml module, talking to the fake library."""
    load_in_process(fake_nvml_dir)
    import pynvml as mod

    nvml_state([FakeGpu("GPU-probe")])
    mod.nvmlInit()
    try:
        driver = mod.nvmlSystemGetDriverVersion()
    finally:
        mod.nvmlShutdown()
    if driver != FAKE_DRIVER:
        pytest.skip(f"this process already loaded a real NVML (driver {driver}); run apart")
    return mod
