"""Facts about the machine that engine and variant choices depend on."""

from __future__ import annotations

import functools
import math
import os
import platform
from pathlib import Path

import psutil


@functools.cache
def physical_cores() -> int:
    """The cores this process may use: the machine's physical cores, fewer when its CPU affinity
    or its cgroup's CPU quota (a container's or a Kubernetes pod's limit) allows fewer."""
    cores = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        cores = min(cores, len(os.sched_getaffinity(0)))
    quota = cgroup_cpu_quota()
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return cores


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs' worth of time the cgroup may use per period (cgroup v2 cpu.max, v1 cfs), None if unbounded."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


@functools.cache
def cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def is_x86_64() -> bool:
    return platform.machine().lower() in {"x86_64", "amd64"}


def has_bf16() -> bool:
    """AVX512_BF16 or AMX: the CPUs on which OpenVINO runs bf16 natively."""
    flags = cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags


# the instruction sets the engines' speed and the lossy variants depend on
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile",
             "amx_int8", "amx_bf16")


@functools.cache
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def isa_flags() -> list[str]:
    flags = cpu_flags()
    return [flag for flag in ISA_FLAGS if flag in flags]


def cpu_class() -> str:
    """A short name for the CPU class a figure holds on, e.g. "avx512-vnni-bf16" or "avx2"."""
    flags = set(isa_flags())
    if "amx_tile" in flags:
        return "amx"
    if "avx512f" in flags:
        return "avx512" + ("-vnni" if "avx512_vnni" in flags else "") + ("-bf16" if "avx512_bf16" in flags else "")
    if "avx2" in flags:
        return "avx2" + ("-vnni" if "avx_vnni" in flags else "")
    return platform.machine().lower() or "unknown"


def machine() -> dict[str, object]:
    """What a measured figure depends on: the CPU, its instruction sets and its cores."""
    return {"cpu": cpu_model(), "class": cpu_class(), "flags": isa_flags(), "cores": physical_cores(),
            "arch": platform.machine()}
