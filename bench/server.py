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
        self._cpu: list[float] = []
        self._peak_rss = 0
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
            self._cpu.append(cpu)
            self._peak_rss = max(self._peak_rss, rss)
            self.series.append((time.perf_counter() - self._began, cpu, rss))

    def __enter__(self) -> ServerWatch:
        self._began = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def figures(self) -> dict[str, Any]:
        mean = sum(self._cpu) / len(self._cpu) if self._cpu else float("nan")
        return {"pid": self._process.pid, "cpu_percent_mean": mean, "cpu_percent_max": max(self._cpu, default=0.0),
                "peak_rss_mib": self._peak_rss / 2**20, "samples": len(self._cpu)}
