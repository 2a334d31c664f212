"""`carbontrack run` end to end: real subprocesses, fake sysfs (RAPL) trees, the estimate path
on this machine's /proc, exit codes, signal forwarding and bad input."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from carbontrack.intensity.catalogue import Catalogue
from carbontrack.sim.powercap import FakePowercap

KWH = 3.6e6
DE = Catalogue.load().get("DE").g_per_kwh


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBONTRACK_")}
    env.update(extra)
    return env


def ct(args: list[str], tmp_path: Path, **kw: object) -> subprocess.CompletedProcess[str]:
    """`carbontrack run` with no RAPL (an empty fake sysfs) unless the test passes --sysfs."""
    base = [sys.executable, "-m", "carbontrack", "run"]
    if "--sysfs" not in args:
        (tmp_path / "nosys").mkdir(exist_ok=True)
        base += ["--sysfs", str(tmp_path / "nosys")]
    kw.setdefault("env", _env())
    return subprocess.run(base + args, capture_output=True, text=True, timeout=120, **kw)  # type: ignore[call-overload,no-any-return]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _json(out: Path) -> dict[str, object]:
    (doc,) = out.glob("carbontrack-*.json")
    return json.loads(doc.read_text())  # type: ignore[no-any-return]


def test_estimate_path_writes_csv_json_and_summary(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    p = ct(["--zone", "DE", "--output", str(out), "--interval", "0.2", "--",
            sys.executable, "-c", "sum(range(10**7)); print('child ran')"], tmp_path)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stdout == "child ran\n"  # the summary goes to stderr, the child's stdout is untouched
    assert "carbontrack summary" in p.stderr and "estimated" in p.stderr and "gCO2e" in p.stderr
    (row,) = _rows(out / "emissions.csv")
    doc = _json(out)
    assert row["run_id"] == doc["run_id"]
    assert (row["method"], row["zone"], row["tracking_mode"]) == ("estimated", "DE", "process")
    assert float(row["energy_consumed"]) > 0
    # emissions (kg) = facility kWh x factor / 1000 with one static factor
    assert float(row["emissions"]) == pytest.approx(float(row["energy_consumed"]) * DE / 1000, rel=1e-9)
    assert doc["exit_code"] == 0 and doc["command"][-1].startswith("sum(range")
    assert {s["name"] for s in doc["sources"]} == {"cpu-estimate", "memory-estimate"}  # type: ignore[union-attr]
    assert any("RAPL not used" in n for n in doc["method_notes"])  # type: ignore[union-attr]


def test_rapl_path_books_exactly_the_counter_delta(tmp_path: Path) -> None:
    sysfs = tmp_path / "sys"
    pc = FakePowercap(sysfs)
    pc.add_package(0, dram=True)
    zones = sysfs / "class/powercap"
    # the child is the "hardware": it moves the package by 5 J and dram by 2 J
    child = (
        "import os, sys\n"
        "def put(p, v):\n"
        "    open(p + '.tmp', 'w').write(v)\n"
        "    os.replace(p + '.tmp', p)\n"
        f"put('{zones}/intel-rapl:0/energy_uj', '5000000\\n')\n"
        f"put('{zones}/intel-rapl:0:2/energy_uj', '2000000\\n')\n"
    )
    out = tmp_path / "out"
    out.mkdir()
    p = ct(["--zone", "DE", "--pue", "1.5", "--scope", "machine", "--sysfs", str(sysfs), "--market-factor", "50",
            "--output", str(out), "--", sys.executable, "-c", child], tmp_path)  # fmt: skip
    assert p.returncode == 0, p.stderr
    doc = _json(out)
    assert doc["method"] == "measured"
    assert doc["energy_j"] == {"cpu": 5.0, "dram": 2.0}
    assert doc["co2e_grams"] == pytest.approx(7.0 / KWH * 1.5 * DE)
    (row,) = _rows(out / "emissions.csv")
    assert float(row["cpu_energy"]) == pytest.approx(5.0 / KWH * 1.5)
    assert float(row["ram_energy"]) == pytest.approx(2.0 / KWH * 1.5)
    assert doc["market_based_co2e_grams"] == pytest.approx(7.0 / KWH * 1.5 * 50)
    assert float(row["market_based_emissions"]) == pytest.approx(7.0 / KWH * 1.5 * 50 / 1000)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("import sys; sys.exit(7)", 7),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", 128 + 9),
    ],
)
def test_exit_status_is_the_childs(tmp_path: Path, code: str, expected: int) -> None:
    p = ct(["--zone", "DE", "--output", str(tmp_path), "--", sys.executable, "-c", code], tmp_path)
    assert p.returncode == expected, p.stderr
    assert _json(tmp_path)["exit_code"] == expected  # results are written for failed runs too


CHILD_WAITING = (
    "import signal, sys, time, pathlib\n"
    "d = pathlib.Path(sys.argv[1])\n"
    "def on(sig, _):\n"
    "    (d / 'got').write_text(signal.Signals(sig).name)\n"
    "    sys.exit(3)\n"
    "signal.signal(signal.SIGTERM, on)\n"
    "signal.signal(signal.SIGHUP, on)\n"
    # explicit: a shell that starts the test run in the background (`cmd &`) makes SIGINT
    # ignored, which the child would inherit (correctly: exec keeps ignored signals)
    "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
    "(d / 'ready').write_text('1')\n"
    "while True:\n"
    "    time.sleep(0.05)\n"
)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signals_sent_to_carbontrack_reach_the_child(tmp_path: Path, sig: signal.Signals) -> None:
    (tmp_path / "nosys").mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "carbontrack", "run", "--zone", "DE", "--sysfs", str(tmp_path / "nosys"),
         "--output", str(tmp_path), "--", sys.executable, "-c", CHILD_WAITING, str(tmp_path)],
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        while not (tmp_path / "ready").exists():
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.01)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    if sig == signal.SIGINT:  # Python's default: KeyboardInterrupt, then it dies by SIGINT
        assert proc.returncode == 128 + signal.SIGINT, err
    else:
        assert proc.returncode == 3, err
        assert (tmp_path / "got").read_text() == sig.name
    assert _json(tmp_path)["exit_code"] == proc.returncode


MARKER_CMD = [sys.executable, "-c", "import pathlib, sys; pathlib.Path(sys.argv[1]).write_text('ran')"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--zone", "Atlantis"], "unknown grid zone 'Atlantis'"),
        (["--zone", "DE", "--pue", "-1"], "invalid PUE -1.0"),
        (["--zone", "DE", "--pue", "abc"], "--pue: invalid float value"),
        (["--zone", "DE", "--scope", "galaxy"], "--scope: invalid choice"),
        (["--zone", "DE", "--output", "{tmp}/afile"], "is not a directory"),
        (["--zone", "DE", "--output", "{tmp}/afile/sub"], "afile is not a directory"),
        (["--zone", "DE", "--output", "/proc/self/carbontrack-out"], "cannot create it"),
        # the output directory is made before the zone is checked: the failure removes it
        (["--zone", "Atlantis", "--output", "{tmp}/new/deeper"], "unknown grid zone 'Atlantis'"),
        (["--zone", "DE", "--interval", "0"], "invalid interval"),
        (["--zone", "DE", "--procfs", "{tmp}/missing"], "cannot read"),
        ([], "--zone"),
    ],
)
def test_bad_input_one_line_error_nothing_run_nothing_written(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "afile").write_text("")
    marker = tmp_path / "marker"
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--output" not in args:
        args += ["--output", str(out)]
    p = ct([*args, "--", *MARKER_CMD, str(marker)], tmp_path)
    assert p.returncode != 0
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("carbontrack run: error: "), p.stderr
    assert message in p.stderr
    assert not marker.exists()
    assert list(out.iterdir()) == []
    assert not (tmp_path / "new").exists()


def test_output_directory_is_created_with_its_parents(tmp_path: Path) -> None:
    # like pip's -d: a missing --output is made, parents included
    marker = tmp_path / "marker"
    out = tmp_path / "a" / "b" / "c"
    p = ct(["--zone", "DE", "--output", str(out), "--", *MARKER_CMD, str(marker)], tmp_path)
    assert p.returncode == 0, p.stderr
    assert marker.read_text() == "ran"
    names = sorted(f.name for f in out.iterdir())
    assert len(names) == 2 and names[0].startswith("carbontrack-") and names[0].endswith(".json")
    assert names[1:] == ["emissions.csv"]


def test_command_not_found(tmp_path: Path) -> None:
    p = ct(["--zone", "DE", "--output", str(tmp_path), "--", "no-such-command-xyz"], tmp_path)
    assert p.returncode != 0
    assert p.stderr == (
        "carbontrack run: error: command not found: 'no-such-command-xyz' is not an executable file or on PATH\n"
    )
    assert sorted(x.name for x in tmp_path.iterdir()) == ["nosys"]


def test_env_zone_and_pue_and_format_json_only(tmp_path: Path) -> None:
    p = ct(["--output", str(tmp_path), "--format", "json", "--quiet", "--", "true"], tmp_path,
           env=_env(CARBONTRACK_ZONE="FR", CARBONTRACK_PUE="1.2"))  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""  # --quiet, and nothing to warn about
    doc = _json(tmp_path)
    assert (doc["zone"], doc["pue"]) == ("FR", 1.2)
    assert not (tmp_path / "emissions.csv").exists()


def test_foreign_csv_is_left_alone_and_the_user_is_told(tmp_path: Path) -> None:
    (tmp_path / "emissions.csv").write_text("a,b\n1,2\n")
    p = ct(["--zone", "DE", "--output", str(tmp_path), "--", "true"], tmp_path)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "emissions.csv").read_text() == "a,b\n1,2\n"
    assert len(_rows(tmp_path / "emissions-1.csv")) == 1
    assert "warning: " in p.stderr and "emissions-1.csv" in p.stderr


def test_zone_from_the_cloud_region_in_the_environment(tmp_path: Path) -> None:
    p = ct(["--output", str(tmp_path), "--quiet", "--", "true"], tmp_path, env=_env(AWS_REGION="eu-west-1"))
    assert p.returncode == 0, p.stderr
    (row,) = _rows(tmp_path / "emissions.csv")
    assert (row["zone"], row["cloud_provider"], row["cloud_region"], row["on_cloud"]) == ("IE", "aws", "eu-west-1", "Y")
    # an explicit zone wins over the environment
    p = ct(["--zone", "FR", "--output", str(tmp_path), "--quiet", "--", "true"], tmp_path,
           env=_env(AWS_REGION="eu-west-1"))  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert _rows(tmp_path / "emissions.csv")[1]["zone"] == "FR"


def test_unknown_cloud_region_and_no_zone_is_an_error(tmp_path: Path) -> None:
    p = ct(["--output", str(tmp_path), "--", "true"], tmp_path, env=_env(AWS_REGION="mars-1"))
    assert p.returncode != 0
    assert p.stderr == (
        "carbontrack run: error: no grid zone for this machine (cloud region aws:mars-1 from the environment "
        "is unknown): pass --zone KEY or set CARBONTRACK_ZONE; find keys with `carbontrack zones --search TEXT`\n"
    )


def test_example_workload_under_carbontrack_run(tmp_path: Path) -> None:
    example = Path(__file__).parents[3] / "examples" / "train_example.py"
    p = ct(["--zone", "DE", "--output", str(tmp_path), "--", sys.executable, str(example),
            "--epochs", "2", "--samples", "2000"], tmp_path)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("epoch ") == 2
    (row,) = _rows(tmp_path / "emissions.csv")
    assert float(row["duration"]) > 0 and float(row["energy_consumed"]) > 0


COUNT_SIGINT = (
    "import signal, sys, time, pathlib\n"
    "d = pathlib.Path(sys.argv[1])\n"
    "got = []\n"
    "signal.signal(signal.SIGINT, lambda *_: got.append(1))\n"
    "(d / 'ready').write_text('1')\n"
    "while not got:\n"
    "    time.sleep(0.01)\n"
    "time.sleep(0.5)  # a duplicate SIGINT would arrive within this\n"
    "(d / 'count').write_text(str(len(got)))\n"
)


def test_terminal_ctrl_c_reaches_the_child_once(tmp_path: Path) -> None:
    # Ctrl-C on a real (pseudo) terminal: the tty sends SIGINT to the foreground process
    # group, which holds both carbontrack and the command; carbontrack must not send it again.
    import pty

    (tmp_path / "nosys").mkdir()
    argv = [sys.executable, "-m", "carbontrack", "run", "--zone", "DE", "--sysfs", str(tmp_path / "nosys"),
            "--output", str(tmp_path), "--quiet", "--", sys.executable, "-c", COUNT_SIGINT, str(tmp_path)]  # fmt: skip
    pid, fd = pty.fork()
    if pid == 0:  # the child: session leader with the pty as its controlling terminal
        os.execve(argv[0], argv, _env())
    try:
        while not (tmp_path / "ready").exists():
            time.sleep(0.01)
        os.write(fd, b"\x03")  # Ctrl-C (VINTR)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    assert (tmp_path / "count").read_text() == "1"


def test_cpu_watts_overrides_the_model(tmp_path: Path) -> None:
    p = ct(["--zone", "DE", "--cpu-watts", "65", "--output", str(tmp_path), "--quiet", "--", "true"], tmp_path)
    assert p.returncode == 0, p.stderr
    doc = _json(tmp_path)
    notes = doc["method_notes"]
    assert isinstance(notes, list) and any("override: 65 W" in n for n in notes), notes
    assert doc["method"] == "estimated"
