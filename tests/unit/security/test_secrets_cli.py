"""Credentials in the environment and in a kubeconfig never reach what the tracker and the
report CLI print or write: stdout, stderr, every file written. The report's cluster source
talks to a real local server that refuses it (401, 500) and echoes every request header."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from leaky_server import leaky_server

TOKEN = "SECRET-TOKEN-7f3a9c1e"
PASSWORD = "SECRET-PASSWORD-51b2d"
KUBE_TOKEN = "SECRET-KUBE-TOKEN-c0ffee"
SECRETS = (TOKEN, PASSWORD, KUBE_TOKEN)


def _kubeconfig(tmp_path: Path, server: str, token_line: str = f"token: {KUBE_TOKEN}") -> Path:
    p = tmp_path / "kubeconfig.yaml"
    p.write_text(f"""apiVersion: v1
kind: Config
current-context: c
clusters: [{{name: k, cluster: {{server: "{server}"}}}}]
contexts: [{{name: c, context: {{cluster: k, user: u}}}}]
users:
- name: u
  user:
    {token_line}
""")
    return p


def _env(kubeconfig: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBONTRACK_") and k != "KUBERNETES_SERVICE_HOST"}
    env.update(ELECTRICITYMAPS_API_TOKEN=TOKEN, WATTTIME_USERNAME="someone", WATTTIME_PASSWORD=PASSWORD,
               KUBECONFIG=str(kubeconfig))
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "carbontrack", *args], capture_output=True, text=True,
                          timeout=120, env=env)


def _assert_clean(p: subprocess.CompletedProcess[str], *dirs: Path) -> int:
    """No secret in the output or in any file under ``dirs``; returns how many files were read."""
    files = [f for d in dirs for f in d.rglob("*") if f.is_file() and f.name != "kubeconfig.yaml"]
    for where, text in [("stdout", p.stdout), ("stderr", p.stderr)] + [
        (str(f), f.read_text(encoding="utf-8", errors="replace")) for f in files
    ]:
        for secret in SECRETS:
            assert secret not in text, f"{secret} leaked in {where}"
    return len(files)


def _tracker_run(tmp_path: Path, env: dict[str, str]) -> Path:
    out = tmp_path / "runs"
    (tmp_path / "nosys").mkdir()
    p = _run(["run", "--sysfs", str(tmp_path / "nosys"), "--zone", "DE", "--output", str(out), "--interval", "0.2",
              "--project-name", "secret-test", "--", sys.executable, "-c", "print('child ran')"], env)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "child ran\n" and "carbontrack summary" in p.stderr
    assert _assert_clean(p, out) == 2  # emissions.csv and the run's JSON
    return out


def test_tracker_outputs_carry_no_credentials_from_the_environment(tmp_path: Path) -> None:
    _tracker_run(tmp_path, _env(_kubeconfig(tmp_path, "https://127.0.0.1:1")))


@pytest.mark.parametrize(("provider", "status", "extra"), [
    ("electricitymaps", 401, []),
    ("electricitymaps", 500, []),
    ("watttime", 401, ["--watttime-region", "DE=DE_TEST"]),
    ("watttime", 500, ["--watttime-region", "DE=DE_TEST"]),
])
def test_tracker_with_a_refusing_live_provider_keeps_its_credentials_out(
    tmp_path: Path, provider: str, status: int, extra: list[str]
) -> None:
    with leaky_server({"/": [(status, {})]}) as s:
        env = _env(_kubeconfig(tmp_path, "https://127.0.0.1:1"))
        out = tmp_path / "runs"
        (tmp_path / "nosys").mkdir()
        p = _run(["run", "--sysfs", str(tmp_path / "nosys"), "--zone", "DE", "--output", str(out),
                  "--interval", "0.2", "--intensity-provider", provider, "--intensity-base-url", s.url, *extra,
                  "--", sys.executable, "-c", "print('child ran')"], env)
        sent = [h.get("auth-token") or h.get("authorization") for _, h in s.requests]
    assert p.returncode == 0, p.stderr
    assert sent and all(sent)  # every request carried the credential (and had it quoted back)
    (doc,) = out.glob("carbontrack-*.json")
    assert f"HTTP {status}" in doc.read_text()  # the fallback's reason is in the run's provenance
    assert _assert_clean(p, out) == 2


@pytest.mark.parametrize("status", [401, 500])
def test_report_refused_by_the_api_server_prints_no_token(tmp_path: Path, status: int) -> None:
    with leaky_server({"/": [(status, {"reason": "Unauthorized" if status == 401 else "InternalError"})]}) as s:
        env = _env(_kubeconfig(tmp_path, s.url))
        runs = _tracker_run(tmp_path, env)
        out = tmp_path / "report"
        p = _run(["report", "--cluster", "--tracker-file", str(runs), "--period", "2026", "-o", str(out)], env)
        seen = [h.get("authorization") for _, h in s.requests]
    assert p.returncode != 0
    assert f"Bearer {KUBE_TOKEN}" in seen  # the server got the token and quoted it back
    assert "carbontrack report: error:" in p.stderr
    _assert_clean(p, tmp_path)


def test_report_with_a_broken_kubeconfig_does_not_quote_it(tmp_path: Path) -> None:
    kc = _kubeconfig(tmp_path, "https://127.0.0.1:1", f"token: {KUBE_TOKEN}: [")
    env = _env(kc)
    runs = _tracker_run(tmp_path, env)
    p = _run(["report", "--cluster", "--kubeconfig", str(kc), "--tracker-file", str(runs), "-o",
              str(tmp_path / "report")], env)
    assert p.returncode == 2
    assert p.stderr.startswith("carbontrack report: error: cannot load Kubernetes credentials: the kubeconfig is "
                               "not valid YAML (mapping values are not allowed here at line 9, column")
    assert "Traceback" not in p.stderr
    _assert_clean(p, tmp_path)


def test_operator_with_a_broken_kubeconfig_does_not_quote_it(tmp_path: Path) -> None:
    from carbontrack.operator.kubeconfig import load_endpoint

    from carbontrack.core.errors import ConfigError

    kc = _kubeconfig(tmp_path, "https://127.0.0.1:1", f"token: {KUBE_TOKEN}: [")
    with pytest.raises(ConfigError) as info:
        load_endpoint(str(kc))
    assert "line 9" in str(info.value) and info.value.__cause__ is None
    assert all(s not in str(info.value) for s in SECRETS)


def test_report_from_tracker_files_writes_every_format_without_credentials(tmp_path: Path) -> None:
    env = _env(_kubeconfig(tmp_path, "https://127.0.0.1:1"))
    runs = _tracker_run(tmp_path, env)
    out = tmp_path / "report"
    p = _run(["report", "--tracker-file", str(runs), "-o", str(out),
              "--format", "csv,json,html,aiact,statement"], env)
    assert p.returncode == 0, p.stderr
    assert _assert_clean(p, out) == 6
