"""WriteBehind: writes of running workloads behind their watch events (operator/write_behind.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from carbontrack.operator.write_behind import WriteBehind


class Recorder:
    """Writes that log their start and end and wait on a gate, with the most ever in flight."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.gate = asyncio.Event()
        self.gate.set()

    def write(self, name: str, fail: bool = False) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            self.log.append(f"start {name}")
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            try:
                await self.gate.wait()
                await asyncio.sleep(0)
                if fail:
                    raise RuntimeError(f"{name} failed")
            finally:
                self.in_flight -= 1
                self.log.append(f"end {name}")
        return run


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout=5))


def test_every_write_runs_and_at_most_workers_are_in_flight() -> None:
    async def go() -> None:
        rec, behind = Recorder(), WriteBehind(workers=3)
        for i in range(20):
            behind.submit(f"uid-{i}", rec.write(f"w{i}"))
        await behind.drain()
        assert sorted(e for e in rec.log if e.startswith("end")) == sorted(f"end w{i}" for i in range(20))
        assert rec.most_in_flight == 3
        assert behind.pending == 0
    run(go())


def test_a_newer_write_replaces_one_that_has_not_started() -> None:
    async def go() -> None:
        rec, behind = Recorder(), WriteBehind(workers=1)
        rec.gate.clear()
        behind.submit("a", rec.write("a1"))
        await asyncio.sleep(0)  # a1 starts and waits on the gate
        behind.submit("b", rec.write("b1"))
        behind.submit("b", rec.write("b2"))  # b1 never started: b2 replaces it
        rec.gate.set()
        await behind.drain()
        assert rec.log == ["start a1", "end a1", "start b2", "end b2"]
    run(go())


def test_one_workloads_writes_never_overlap_and_keep_their_order() -> None:
    async def go() -> None:
        rec, behind = Recorder(), WriteBehind(workers=4)
        rec.gate.clear()
        behind.submit("a", rec.write("a1"))
        await asyncio.sleep(0)  # a1 in flight
        behind.submit("a", rec.write("a2"))  # free workers, but a is being written: waits
        for _ in range(5):
            await asyncio.sleep(0)
        assert rec.log == ["start a1"]
        rec.gate.set()
        await behind.drain()
        assert rec.log == ["start a1", "end a1", "start a2", "end a2"]
    run(go())


def test_a_discarded_write_does_not_run_and_a_failure_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def go() -> None:
        rec, behind = Recorder(), WriteBehind(workers=1)
        rec.gate.clear()
        behind.submit("a", rec.write("a", fail=True))
        await asyncio.sleep(0)
        behind.submit("b", rec.write("b"))
        behind.submit("c", rec.write("c"))
        behind.discard("b")
        rec.gate.set()
        await behind.drain()
        assert rec.log == ["start a", "end a", "start c", "end c"]
    run(go())
    assert "write to workload a failed" in caplog.text


def test_close_cancels_what_is_in_flight_and_drops_what_waits() -> None:
    async def go() -> None:
        rec, behind = Recorder(), WriteBehind(workers=1)
        rec.gate.clear()
        behind.submit("a", rec.write("a"))
        behind.submit("b", rec.write("b"))
        await asyncio.sleep(0)
        await behind.close()
        assert rec.log == ["start a", "end a"] and behind.pending == 0
        await behind.drain()  # nothing left: returns at once
    run(go())


def test_workers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        WriteBehind(workers=0)
