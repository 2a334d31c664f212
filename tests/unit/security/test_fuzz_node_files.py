"""Property-based tests of the parsers of node files (/proc, cgroup files): whatever the
files hold, only the documented error comes out (SourceUnavailable for /proc readers, None
for a cgroup file that cannot be read as a counter), never an exception, and never a negative
or non-finite number taken as measured. Each property runs 1,000 examples."""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from carbontrack.exporter.cgroups import CgroupReader, ContainerCgroup
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from carbontrack.core.errors import SourceUnavailable
from carbontrack.sim.cgroups import FakeCgroupTree
from carbontrack.sources.procstat import (
    CpuTimes,
    parse_pid_stat,
    read_cpuinfo,
    read_memtotal_bytes,
    read_proc_stat,
)

FUZZ = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# numbers as a kernel would write them, and as it never would
numberish = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(["", "-0", "+5", "1_000", "٣", "0x10", "1e3", "nan", "inf", " 7", "18446744073709551615"]),
    st.text(max_size=8),
)


@pytest.fixture(scope="module")
def procfs() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


def _stat_text(cpu_fields: list[str], extra: str) -> str:
    return f"cpu  {' '.join(cpu_fields)}\ncpu0 {' '.join(cpu_fields)}\n{extra}"


@FUZZ
@given(st.one_of(st.builds(_stat_text, st.lists(numberish, max_size=11), st.text(max_size=40)), st.text(max_size=200)))
@example("cpu  1 2 3\n")  # an old kernel's short line: the missing counters are 0
@example("cpu  1 -2 3 4 5 6 7 8\n")
@example("cpu  \n")
def test_proc_stat(procfs: Path, text: str) -> None:
    (procfs / "stat").write_text(text)
    try:
        got = read_proc_stat(procfs)
    except SourceUnavailable:
        return
    times = [getattr(got.cpu, f) for f in ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")]
    assert all(isinstance(t, int) and t >= 0 for t in times)
    assert got.online_cpus >= 1
    share = got.cpu.utilisation_since(CpuTimes())
    assert 0.0 <= share <= 1.0


@FUZZ
@given(st.one_of(st.builds("MemTotal: {} kB\n".format, numberish), st.text(max_size=80)))
@example("MemTotal:\n")
@example("MemTotal: -4 kB\n")
def test_meminfo(procfs: Path, text: str) -> None:
    (procfs / "meminfo").write_text(text)
    try:
        got = read_memtotal_bytes(procfs)
    except SourceUnavailable:
        return
    assert got >= 0 and got % 1024 == 0


@FUZZ
@given(st.text(max_size=300))
@example("processor: 0\nphysical id: 0\ncpu family: 0xZZ\nmodel: -1\n")
def test_cpuinfo(procfs: Path, text: str) -> None:
    (procfs / "cpuinfo").write_text(text)
    got = read_cpuinfo(procfs)  # documented never to raise
    assert got.sockets >= 1


def _pid_stat_line(pid: str, comm: str, fields: list[str]) -> str:
    return f"{pid} ({comm}) {' '.join(fields)}"


@FUZZ
@given(st.one_of(
    st.builds(_pid_stat_line, numberish, st.text(max_size=20), st.lists(numberish, min_size=18, max_size=24)),
    st.text(max_size=200),
))
@example("12 (a) S 1 " + " ".join(["-5"] * 20))  # negative CPU ticks: refused, not subtracted
def test_pid_stat(text: str) -> None:
    try:
        got = parse_pid_stat(text)
    except (ValueError, IndexError):  # what read_pid_stat's callers skip
        return
    assert min(got.pid, got.ppid, got.utime, got.stime, got.cutime, got.cstime, got.starttime) >= 0
    assert got.own_ticks >= 0 and got.children_ticks >= 0


def _container(root: Path, version: int) -> tuple[CgroupReader, ContainerCgroup]:
    tree = FakeCgroupTree(root / "sys", version=version)
    tree.add_pod("0a0a0a0a-1111-2222-3333-444444444444", "burstable", {"main": (0.5, 0)})
    reader = CgroupReader(root / "sys" / "fs" / "cgroup")
    (c,) = [c for c in reader.discover() if c.pod_uid.startswith("0a0a")][:1]
    return reader, c


@pytest.fixture(scope="module", params=[1, 2])
def cgroup(request: pytest.FixtureRequest) -> Iterator[tuple[CgroupReader, ContainerCgroup]]:
    with tempfile.TemporaryDirectory() as d:
        yield _container(Path(d), request.param)


counter_bytes = st.one_of(
    st.binary(max_size=40),
    numberish.map(lambda s: s.encode()),
    numberish.map(lambda s: f"usage_usec {s}\nuser_usec 1\n".encode()),
    numberish.map(lambda s: f"user_usec 1\nusage_usec {s}".encode()),
)


def _finite_non_negative(x: float | None) -> bool:
    return x is None or (math.isfinite(x) and x >= 0)


@FUZZ
@given(counter_bytes, counter_bytes, counter_bytes, counter_bytes)
@example(b"usage_usec -5\n", b"-1", b"0", b"usage_usec 1_0\n")
@example(b"usage_usec x\n", b"\xff", b"10001", b"-3")
def test_cgroup_files(cgroup: tuple[CgroupReader, ContainerCgroup], cpu: bytes, root: bytes, memory: bytes,
                      other: bytes) -> None:
    reader, c = cgroup
    for path, data in ((c.cpu_file, cpu), (reader._root_file, root), (c.memory_file, memory),
                       (c.dir + b"/cpu.weight", other), (c.dir + b"/cpu.shares", other),
                       (c.dir + b"/cgroup.procs", other)):
        with open(os.fsdecode(path), "wb") as f:
            f.write(data)
    usage = reader.read([c])
    assert _finite_non_negative(usage.root_cpu_s)
    assert all(_finite_non_negative(v) for v in usage.containers.values())
    mem = reader.memory_bytes(c)
    assert mem is None or mem >= 0
    weight = reader.cpu_weight(c)
    assert weight is None or 1 <= weight <= 10000
    assert _finite_non_negative(reader.cpu_request_cores(c))
    pid = reader.first_pid(c)
    assert pid is None or pid >= 0
