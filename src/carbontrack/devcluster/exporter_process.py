"""A real `carbontrack exporter --no-kube` process on a fake node tree, for tests and benches.

The OS picks the port (``--listen 127.0.0.1:0``); the exporter's start-up log line
``serving http://HOST:PORT/metrics`` (``https://`` with TLS; part of its contract) tells which. stderr is drained
into a log file on a thread, because a full pipe would block the exporter.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

# metric name -> [(labels, value)], as scraped
Samples = dict[str, list[tuple[dict[str, str], float]]]

SERVING = re.compile(rb"serving (https?)://[\d.]+:(\d+)/metrics")


def parse(text: str) -> Samples:
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


class ExporterProcess:
    """Starts ``python -m carbontrack exporter`` reading ``root/sys`` and ``root/proc``, with its
    state in ``root/state`` and its log in ``root/exporter.log``; extra CLI flags in ``args``."""

    def __init__(self, root: Path, *args: str, zone: str = "DE", pue: float = 1.0) -> None:
        self.log_path = root / "exporter.log"
        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "carbontrack", "exporter", "--node-name", "node-1",
             "--sysfs", str(root / "sys"), "--procfs", str(root / "proc"),
             "--state-dir", str(root / "state"), "--listen", "127.0.0.1:0", "--no-kube",
             "--zone", zone, "--pue", str(pue), *args],
            stderr=subprocess.PIPE, stdout=self.log,
        )
        self.scheme = "http"
        self.port = self._wait_for_port()

    def _wait_for_port(self) -> int:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.log.write(raw)
            m = SERVING.search(raw)
            if m:
                threading.Thread(target=self._drain, daemon=True).start()
                self.scheme = m.group(1).decode()
                return int(m.group(2))
        raise AssertionError(f"exporter exited ({self.proc.wait()}) before serving; log: {self.log_path}")

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.write(line)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/metrics"

    def text(self, timeout: float = 10.0) -> str:
        with urllib.request.urlopen(self.url, timeout=timeout) as r:
            return str(r.read().decode())

    def scrape(self) -> Samples:
        return parse(self.text())

    def _status_field(self, pattern: str) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        match = re.search(pattern, status, re.M)
        if match is None:
            raise AssertionError(f"{pattern!r} not in /proc/{self.proc.pid}/status")
        return int(match.group(1))

    def threads(self) -> int:
        return self._status_field(r"^Threads:\s+(\d+)")

    def rss_bytes(self) -> int:
        return self._status_field(r"^VmRSS:\s+(\d+) kB") * 1024

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.log.close()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=30)
        self.log.close()
        return rc
