"""CPU and memory of the server under test, sampled while the load runs (a local process only)."""

from __future__ import annotations

import threading
import time
from typing import Any

import psutil

from xscore.api.errors import invalid


class ServerWatch:
    """Samples a process (and its children: a server's workers) every `interval_s` in a thread."""

    def __init__(self, pid: int, interval_s: float = 0.25) -> None:
        try:
            self._process = psutil.Process(pid)
        except psutil.Error as exc:
            raise invalid(f"no process {pid} to watch here: {exc}", field="server_pid") from None
        self._interval = interval_s
        self._stop = threading.Event()
        self.series: list[tuple[float, float, int]] = []  # (seconds since the watch began, CPU %, RSS bytes)
        self._began = time.perf_counter()
        self._thread = threading.Thread(target=self._watch, name="server-watch", daemon=True)

    def _tree(self) -> list[psutil.Process]:
        try:
            return [self._process, *self._process.children(recursive=True)]
        except psutil.Error:
            return []

    def _watch(self) -> None:
        for process in self._tree():
            try:
                process.cpu_percent(None)  # the first call only starts the clock
            except psutil.Error:
                pass
        while not self._stop.wait(self._interval):
            cpu, rss = 0.0, 0
            for process in self._tree():
                try:
                    cpu += process.cpu_percent(None)
                    rss += process.memory_info().rss
                except psutil.Error:
                    continue
            self.series.append((time.perf_counter() - self._began, cpu, rss))

    def __enter__(self) -> ServerWatch:
        self._began = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def figures(self) -> dict[str, Any]:
        cpu = [sample for _, sample, _ in self.series]
        return {"pid": self._process.pid, "cpu_percent_mean": sum(cpu) / len(cpu) if cpu else float("nan"),
                "cpu_percent_max": max(cpu, default=0.0),
                "peak_rss_mib": max((rss for _, _, rss in self.series), default=0) / 2**20, "samples": len(cpu)}
