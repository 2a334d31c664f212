"""Applying an interval's attribution steps to the ledger (energy and CO2e per container).

The per-container loop is a cycle's hottest: ledger updates are inlined, and each
container's ``ContainerTotals`` is kept from one cycle to the next while still valid."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from carbontrack.core.types import EnergyReading

from .interval import Give, Step
from .state import ContainerKey, ContainerTotals, Ledger, Owner


@dataclass(frozen=True)
class IntervalResult:
    """What one cycle attributed (joules per component): for tests, bench and logs."""

    start: float
    end: float
    node: dict[str, float]
    unallocated: dict[str, float]
    # (component, (container, joules) pairs) as the cycle gave them to the ledger. The
    # collection loop never reads ``containers``, so it is built from these on first use
    # rather than in the per-container hot loop.
    given: Sequence[tuple[str, Collection[tuple[ContainerKey, float]]]] = field(
        default=(), compare=False, repr=False)

    @cached_property
    def containers(self) -> dict[ContainerKey, dict[str, float]]:
        """Joules per container and component this interval (only those that got some)."""
        out: dict[ContainerKey, dict[str, float]] = {}
        for comp, items in self.given:
            for key, j in items:
                if j <= 0:
                    continue  # as book(): nothing given
                per = out.get(key)
                if per is None:
                    out[key] = {comp: j}
                else:
                    per[comp] = per.get(comp, 0.0) + j
        return out


class Booker:
    """Books steps into a ledger, keeping ContainerTotals by key across cycles."""

    def __init__(self, owner: Callable[[str], Owner]) -> None:
        self.owner = owner  # pod uid -> owner labels (from the pod cache)
        self._totals: dict[ContainerKey, ContainerTotals] = {}
        self._stamp: tuple[Ledger, int, int] | None = None

    def book(self, led: Ledger, start: float, end: float,
             deltas: Sequence[tuple[EnergyReading, float]], steps: Sequence[Step],
             g_per_joule: float | None, pods_generation: int) -> IntervalResult:
        totals = self._container_totals(led, pods_generation)
        node_tot: dict[str, float] = {}
        for r, d in deltas:
            led.add_node(r.component.value, r.device, r.method.value, d)
            node_tot[r.component.value] = node_tot.get(r.component.value, 0.0) + d
        given: list[tuple[str, Collection[tuple[ContainerKey, float]]]] = []
        unalloc_tot: dict[str, float] = {}
        g = g_per_joule
        owner = self.owner
        for step in steps:
            if not isinstance(step, Give):
                led.add_unallocated(step.component, step.joules)
                unalloc_tot[step.component] = unalloc_tot.get(step.component, 0.0) + step.joules
                continue
            ck = (step.component, step.method)
            given.append((step.component, step.items))  # IntervalResult.containers reads them
            for key, j in step.items:
                if j <= 0:
                    continue
                t = totals.get(key)
                if t is None:
                    t = totals[key] = led.totals(key, owner(key[0]))
                tj = t.joules
                if ck in tj:
                    tj[ck] += j
                else:
                    tj[ck] = j
                    led.structure_version += 1
                if g is not None:
                    tg = t.grams
                    if ck in tg:
                        tg[ck] += j * g
                    else:
                        tg[ck] = j * g
                        led.structure_version += 1
        self._stamp = (led, led.structure_version, pods_generation)
        return IntervalResult(start, end, node_tot, unalloc_tot, given)

    def _container_totals(self, led: Ledger, pods_generation: int
                          ) -> dict[ContainerKey, ContainerTotals]:
        """The ledger's ContainerTotals by key, kept from the last cycle while still valid.

        Looking every container up in the ledger with its owner labels each cycle costs
        ~1 ms at 1,000 containers. The kept map is valid while the ledger's structure did not
        move since the last attribution (no container dropped, finished or relabelled; a
        drop would leave a kept object orphaned and lose its energy) and the pod cache did
        not change (owner labels come from it)."""
        stamp = self._stamp
        if (stamp is None or stamp[0] is not led or stamp[1] != led.structure_version
                or stamp[2] != pods_generation):
            self._totals = {}
        return self._totals
