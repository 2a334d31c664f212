"""The immutable view of the ledger and health that scrapes export (built once per cycle,
on first use, under the engine's lock)."""

from __future__ import annotations

from dataclasses import dataclass

from .state import ContainerKey, Ledger, Owner
from .status import SourceStatus


@dataclass(frozen=True)
class Snapshot:
    """Immutable view of the ledger and health after a cycle; what scrapes export."""

    seq: int
    node_name: str
    node: tuple[tuple[tuple[str, str, str], float], ...]
    containers: tuple[tuple[ContainerKey, Owner, tuple[tuple[str, str, float, float | None],
                                                       ...]], ...]
    unallocated: tuple[tuple[str, float], ...]
    sources: tuple[tuple[str, SourceStatus], ...]
    intensity: tuple[str, str, str, float] | None  # zone, source, basis, g/kWh
    pue: float
    idle_policy: str
    # How cgroup v2 cpu.weight is read back into a request when the pod spec is missing
    # (exporter/cpu_weight.py): map linear|quadratic, basis configured|matched|assumed;
    # on cgroup v1 the shares are exact ("v1-shares", "exact").
    cpu_weight_map: str = ""
    cpu_weight_basis: str = ""
    # a live intensity provider's name and whether the last interval's factor was the static
    # catalogue's instead (the provider failed or is backing off); None for the static catalogue
    intensity_fallback: tuple[str, bool] | None = None


def ledger_view(led: Ledger) -> tuple[
        tuple[tuple[tuple[str, str, str], float], ...],
        tuple[tuple[ContainerKey, Owner, tuple[tuple[str, str, float, float | None], ...]], ...],
        tuple[tuple[str, float], ...]]:
    """(node, containers, unallocated) of a snapshot, copied out of the ledger."""
    ctrs = tuple([
        (key, t.owner, tuple([(ck[0], ck[1], j, t.grams.get(ck)) for ck, j in t.joules.items()]))
        for key, t in led.containers.items()
    ])
    return tuple(led.node.items()), ctrs, tuple(led.unallocated.items())
