"""What a real node changes on the host, recorded before it starts and undone after.

kubelet, containerd, runc and the CNI plugins write outside any state dir: mounts (pod
volumes, container root filesystems, network namespaces), iptables chains, cgroups under
``kubepods``, sysctls (the kubelet raises ``kernel.panic_on_oops``), the CNI bridge and
veths, and a few hard-coded directories; with the NetworkPolicy enforcer (kube-router,
policyenforcer.py) also ipsets. :class:`HostState` is a snapshot of exactly those
things; :func:`restore` undoes the difference between a snapshot and now, touching only
what the real node can have made (other work on the machine keeps its mounts and cgroups).

The parsers and the iptables undo script are pure and unit-tested.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# Sysctls the kubelet sets when protectKernelDefaults is off (its default), plus the
# forwarding switches the bridge plugin turns on.
SYSCTLS = (
    "kernel.panic", "kernel.panic_on_oops", "vm.overcommit_memory", "vm.panic_on_oom",
    "kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes", "net.ipv4.ip_forward",
    "net.ipv6.conf.all.forwarding",
)
# Directories that kubelet, containerd and CNI create whatever their configuration says
# (reality-notes §1), and the hostPaths of the chart's exporter.
HOST_PATHS = (
    "/var/lib/kubelet", "/var/lib/cni", "/run/containerd", "/run/netns", "/var/log/pods",
    "/var/log/containers", "/var/lib/carbontrack", "/etc/cni", "/opt/cni",
)
CGROUP_ROOT = Path("/sys/fs/cgroup")
KUBEPODS = "kubepods"  # the kubelet's pod cgroup root (cgroupfs driver)


@dataclass(frozen=True)
class HostState:
    mounts: tuple[tuple[str, str], ...]  # (mount point, propagation), sorted, with repeats
    links: tuple[str, ...]
    iptables: Mapping[str, str]  # family ("ip", "ip6") -> normalised iptables-save
    cgroups: tuple[str, ...]  # "<hierarchy>/<path>": top-level dirs and all of kubepods
    sysctls: Mapping[str, str]
    paths: Mapping[str, bool]
    ipsets: tuple[str, ...] = ()  # names (`ipset list -n`), sorted; () where ipset is absent

    def differences(self, other: HostState) -> list[str]:
        """Human-readable differences (empty: the same host state)."""
        out: list[str] = []
        for name in ("mounts", "links", "cgroups", "ipsets"):
            a, b = Counter(getattr(self, name)), Counter(getattr(other, name))
            out += [f"{name}: gone {k}" for k in sorted(a - b, key=str)]
            out += [f"{name}: new {k}" for k in sorted(b - a, key=str)]
        for fam in sorted(set(self.iptables) | set(other.iptables)):
            if self.iptables.get(fam) != other.iptables.get(fam):
                out.append(f"{fam}tables: {self.iptables.get(fam)!r} -> {other.iptables.get(fam)!r}")
        for name in ("sysctls", "paths"):
            a, b = getattr(self, name), getattr(other, name)
            out += [f"{name}: {k} {a.get(k)!r} -> {b.get(k)!r}"
                    for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        return out


def parse_mountinfo(text: str) -> tuple[tuple[str, str], ...]:
    """(mount point, propagation) of every line of /proc/self/mountinfo; propagation is
    ``shared``, ``slave`` or ``private`` from the optional fields."""
    out: list[tuple[str, str]] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 7:
            continue
        optional = fields[6:fields.index("-")]
        prop = ("shared" if any(f.startswith("shared:") for f in optional)
                else "slave" if any(f.startswith("master:") for f in optional) else "private")
        mount_point = fields[4].replace("\\040", " ")
        out.append((mount_point, prop))
    return tuple(sorted(out))


def parse_iptables_save(text: str) -> dict[str, tuple[dict[str, str], list[str]]]:
    """table -> (chain -> policy, rules). Counters, comments and tables that hold nothing
    but empty built-in chains with ACCEPT policies are dropped: iptables-nft creates those
    on first use (even by a listing), and they change no packet's fate."""
    tables: dict[str, tuple[dict[str, str], list[str]]] = {}
    current: tuple[dict[str, str], list[str]] | None = None
    for line in text.splitlines():
        if line.startswith("*"):
            current = tables.setdefault(line[1:], ({}, []))
        elif current is None or line.startswith("#") or line == "COMMIT":
            continue
        elif line.startswith(":"):
            name, policy = line[1:].split()[:2]
            current[0][name] = policy
        elif line.startswith("-A "):
            current[1].append(line)
    return {t: v for t, v in tables.items()
            if v[1] or any(p not in ("ACCEPT", "-") for p in v[0].values())
            or any(p == "-" for p in v[0].values())}


def normalise_iptables(text: str) -> str:
    tables = parse_iptables_save(text)
    lines: list[str] = []
    for t in sorted(tables):
        chains, rules = tables[t]
        lines.append(f"*{t}")
        lines += [f":{c} {p}" for c, p in sorted(chains.items())]
        lines += rules
    return "\n".join(lines)


def iptables_undo(before: str, after: str) -> str:
    """An ``iptables-restore --noflush`` script that deletes the rules and chains in
    ``after`` (iptables-save output) that are not in ``before``; empty if none."""
    old, new = parse_iptables_save(before), parse_iptables_save(after)
    out: list[str] = []
    for table in sorted(new):
        chains, rules = new[table]
        old_chains, old_rules = old.get(table, ({}, []))
        extra_rules = list((Counter(rules) - Counter(old_rules)).elements())
        extra_chains = [c for c, p in chains.items() if p == "-" and c not in old_chains]
        if not extra_rules and not extra_chains:
            continue
        out.append(f"*{table}")
        out += ["-D " + r[3:] for r in reversed(extra_rules)]
        out += [f"-F {c}" for c in extra_chains]
        out += [f"-X {c}" for c in extra_chains]
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return "<absent>"


def _cgroups(root: Path) -> tuple[str, ...]:
    """Cgroup directories; ones removed while we walk (containerd cleaning up) are skipped."""
    out: list[str] = []
    for hierarchy in sorted(p for p in root.iterdir() if p.is_dir()):
        for top in sorted(p for p in hierarchy.iterdir() if p.is_dir()):
            out.append(f"{hierarchy.name}/{top.name}")
            if top.name == KUBEPODS:
                for dirpath, _, _ in os.walk(top):  # errors (vanished dirs) are ignored
                    if dirpath != str(top):
                        out.append(f"{hierarchy.name}/{Path(dirpath).relative_to(hierarchy)}")
    return tuple(sorted(out))


def iptables_save(family: str) -> str:
    exe = "iptables-save" if family == "ip" else "ip6tables-save"
    return subprocess.run([exe], capture_output=True, text=True, check=True).stdout


def ipset_names() -> tuple[str, ...]:
    """The host's ipsets (kube-router's NetworkPolicy controller makes them); () without
    the ipset tool, which nothing but the enforcer needs."""
    if shutil.which("ipset") is None:
        return ()
    r = subprocess.run(["ipset", "list", "-n"], capture_output=True, text=True)
    return tuple(sorted(r.stdout.split())) if r.returncode == 0 else ()


def take(paths: Sequence[str] = HOST_PATHS, sysctls: Sequence[str] = SYSCTLS,
         cgroup_root: Path = CGROUP_ROOT) -> HostState:
    """A snapshot of the host (root only: iptables-save needs CAP_NET_ADMIN)."""
    return HostState(
        mounts=parse_mountinfo(Path("/proc/self/mountinfo").read_text()),
        links=tuple(sorted(p.name for p in Path("/sys/class/net").iterdir())),
        iptables={f: normalise_iptables(iptables_save(f)) for f in ("ip", "ip6")},
        cgroups=_cgroups(cgroup_root),
        sysctls={k: _read(Path("/proc/sys") / k.replace(".", "/")) for k in sysctls},
        paths={p: Path(p).exists() for p in paths},
        ipsets=ipset_names(),
    )


@dataclass(frozen=True)
class Owned:
    """Where the real node may have made things: only these are undone."""

    mount_prefixes: tuple[str, ...]  # mount points under these are unmounted
    propagation_roots: tuple[str, ...]  # propagation of these (and below) is restored
    link_prefixes: tuple[str, ...]  # new links named so are deleted (bridge, veths)
    ipset_prefixes: tuple[str, ...] = ()  # new ipsets named so are destroyed (kube-router's)


def _under(path: str, prefixes: Sequence[str]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in prefixes)


def _mounted(mount_point: str) -> bool:
    return any(m == mount_point
               for m, _ in parse_mountinfo(Path("/proc/self/mountinfo").read_text()))


def restore(before: HostState, owned: Owned, raw_iptables_before: Mapping[str, str],
            cgroup_root: Path = CGROUP_ROOT, attempts: int = 3) -> list[str]:
    """Undo what changed since ``before`` within ``owned``; returns what it could not undo
    (empty on success). Never raises: a step that fails is reported and the others still
    run, and the whole pass is repeated while something is left (containerd may still be
    removing what it owned). Processes must already be gone (cgroups cannot be removed,
    nor busy mounts unmounted, while they live)."""
    problems: list[str] = []
    for attempt in range(attempts):
        try:
            problems = _restore_once(before, owned, raw_iptables_before, cgroup_root)
        except Exception as err:  # a vanished file mid-walk, a tool missing: report, retry
            problems = [f"restore failed: {err!r}"]
        if not problems:
            return []
        if attempt < attempts - 1:
            time.sleep(1.0)
    return problems


def _restore_once(before: HostState, owned: Owned, raw_iptables_before: Mapping[str, str],
                  cgroup_root: Path) -> list[str]:
    problems: list[str] = []
    now = take(tuple(before.paths), tuple(before.sysctls), cgroup_root)
    # mounts, deepest first
    extra = Counter(now.mounts) - Counter(before.mounts)
    for mp in sorted({m for m, _ in extra.elements() if _under(m, owned.mount_prefixes)},
                     key=lambda m: (-m.count("/"), m)):
        if subprocess.run(["umount", mp], capture_output=True).returncode != 0:
            r = subprocess.run(["umount", "-l", mp], capture_output=True, text=True)
            # containerd may still be unmounting what pods deleted a moment ago left
            if r.returncode != 0 and _mounted(mp):
                problems.append(f"umount {mp}: {r.stderr.strip()}")
    was = dict(before.mounts)
    for mp, prop in parse_mountinfo(Path("/proc/self/mountinfo").read_text()):
        if _under(mp, owned.propagation_roots) and mp in was and was[mp] != prop:
            flag = {"private": "--make-private", "slave": "--make-slave",
                    "shared": "--make-shared"}[was[mp]]
            subprocess.run(["mount", flag, mp], capture_output=True)
    for link in sorted(set(now.links) - set(before.links)):
        if link.startswith(owned.link_prefixes):
            subprocess.run(["ip", "link", "delete", link], capture_output=True)
    for fam, raw in raw_iptables_before.items():
        script = iptables_undo(raw, iptables_save(fam))
        if script:
            exe = "iptables-restore" if fam == "ip" else "ip6tables-restore"
            r = subprocess.run([exe, "--noflush"], input=script, capture_output=True, text=True)
            if r.returncode != 0:
                problems.append(f"{exe}: {r.stderr.strip()}\n{script}")
    # after the rules that match on them are gone (a set in use cannot be destroyed)
    for name in sorted(set(now.ipsets) - set(before.ipsets)):
        if name.startswith(owned.ipset_prefixes):
            r = subprocess.run(["ipset", "destroy", name], capture_output=True, text=True)
            if r.returncode != 0 and name in ipset_names():
                problems.append(f"ipset destroy {name}: {r.stderr.strip()}")
    for cg in sorted(set(now.cgroups) - set(before.cgroups), key=lambda c: -c.count("/")):
        if cg.split("/")[1] == KUBEPODS:
            try:
                (cgroup_root / cg).rmdir()
            except OSError as err:
                problems.append(f"rmdir cgroup {cg}: {err}")
    for key, value in before.sysctls.items():
        path = Path("/proc/sys") / key.replace(".", "/")
        if value != "<absent>" and _read(path) != value:
            with contextlib.suppress(OSError):
                path.write_text(value + "\n")
    mounted = [m for m, _ in parse_mountinfo(Path("/proc/self/mountinfo").read_text())]
    for p, existed in before.paths.items():
        if not existed and Path(p).exists():
            busy = [m for m in mounted if _under(m, (p,))]
            if busy:  # never delete through a mount (a bind mount's source would go too)
                problems.append(f"not removing {p}: still mounted {busy}")
                continue
            if Path(p).is_symlink() or Path(p).is_file():
                Path(p).unlink()
            else:
                shutil.rmtree(p, ignore_errors=True)
    return problems
