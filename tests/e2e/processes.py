"""Running a service as its own process in tests: start it, read its JSON log lines, stop it."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class ServiceProcess:
    """`python -m <module>` with extra environment; stderr read on a thread as JSON lines."""

    def __init__(self, module: str, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=ROOT,
            env={**os.environ, **env},
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._lines.put(line)

    def until(self, message: str, timeout: float = 60) -> list[dict]:
        """JSON log lines up to the first whose message is `message`; every line must be JSON."""
        lines: list[dict] = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                raw = self._lines.get(timeout=left)
            except queue.Empty:
                break
            try:
                lines.append(json.loads(raw))
            except json.JSONDecodeError as exc:
                raise AssertionError(f"a log line that is not JSON: {raw!r}") from exc
            if lines[-1]["message"] == message:
                return lines
        raise AssertionError(f"no {message!r} log line within {timeout} s; got {lines}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
