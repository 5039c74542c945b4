"""Facts about the machine that engine and variant choices depend on."""

from __future__ import annotations

import functools
import os
import platform

import psutil


@functools.cache
def physical_cores() -> int:
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


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
