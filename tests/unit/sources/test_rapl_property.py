"""Property: no powercap tree content makes RaplSource raise out of read().

Opening may refuse with SourceUnavailable (no package zone to read); once open, read(),
read_detail() and health() return whatever the tree holds, however it changes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carbontrack.core.errors import SourceUnavailable
from carbontrack.sources.rapl import RaplSource

# Directory names: the kernel's forms, near misses, and anything a filename can be.
_DIR_NAMES = st.one_of(
    st.sampled_from(
        ["intel-rapl:0", "intel-rapl:1", "intel-rapl:a", "intel-rapl:0:0", "intel-rapl:0:1", "intel-rapl:a:0",
         "intel-rapl-mmio:0", "intel-rapl-mmio:0:0", "intel-rapl:", "intel-rapl::", "intel-rapl:-1",
         "intel-rapl:0:0:0", "intel-rapl:ffffffffff", "intel-rapl", "intel-rapl-mmio"]
    ),
    st.builds(lambda i: f"intel-rapl:{i}", st.text(min_size=0, max_size=12)),
    st.text(min_size=1, max_size=20),
).filter(lambda n: "/" not in n and "\x00" not in n and n not in (".", ".."))

# Zone names: the kernel's, near misses, and any text.
_ZONE_NAMES = st.one_of(
    st.sampled_from(
        ["package-0", "package-1", "package-0-die-0", "package-0-die-1", "package-10", "dram", "core", "uncore",
         "psys", "psys-1", "package-", "package-x", "package-0-die-", "package-" + "9" * 5000]
    ),
    st.text(max_size=30),
)

_NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(["", " ", "1_000", "0x10", "1e9", "9" * 5000, "nan"]),
    st.text(max_size=12),
)


def _content(text_strategy: st.SearchStrategy[str]) -> st.SearchStrategy[bytes | None]:
    """A file's bytes: text, raw bytes (not ASCII), or no file at all (None)."""
    return st.one_of(
        st.none(),
        text_strategy.map(lambda s: (s + "\n").encode("utf-8", "surrogatepass")),
        st.binary(max_size=16),
    )


_ZONE = st.fixed_dictionaries(
    {
        "name": _content(_ZONE_NAMES),
        "energy_uj": _content(_NUMBERS),
        "max_energy_range_uj": _content(_NUMBERS),
        "constraint_0_max_power_uw": _content(_NUMBERS),
    }
)


def _write_tree(root: Path, zones: dict[str, dict[str, bytes | None]]) -> None:
    for dirname, files in zones.items():
        d = root / dirname
        d.mkdir(parents=True, exist_ok=True)
        for fname, data in files.items():
            if data is not None:
                (d / fname).write_bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    zones=st.dictionaries(_DIR_NAMES, _ZONE, min_size=0, max_size=8),
    updates=st.lists(st.tuples(st.integers(min_value=0, max_value=7), _content(_NUMBERS)), max_size=6),
)
def test_no_powercap_tree_content_makes_read_raise(
    zones: dict[str, dict[str, bytes | None]], updates: list[tuple[int, bytes | None]]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sysfs = Path(tmp)
        powercap = sysfs / "class" / "powercap"
        powercap.mkdir(parents=True)
        _write_tree(powercap, zones)
        now = [0.0]
        try:
            src = RaplSource(sysfs, clock=lambda: now[0])
        except SourceUnavailable:
            return
        names = sorted(zones)
        for i, data in updates:
            if names:
                target = powercap / names[i % len(names)] / "energy_uj"
                if data is None:
                    target.unlink(missing_ok=True)
                else:
                    target.write_bytes(data)
            now[0] += 0.5
            readings = src.read()
            assert all(r.joules >= 0 for r in readings)
            src.read_detail()
            src.health()
