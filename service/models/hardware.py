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
def cpuinfo_flags() -> frozenset[str]:
    """The CPU's own flags, whatever the engines are allowed to use of them."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


# oneDNN, under OpenVINO's CPU plugin, runs no kernel above the instruction set named by
# ONEDNN_MAX_CPU_ISA; that is how an AVX-512 machine runs the kernels an AVX2-only CPU would. Each
# cap keeps these of ISA_FLAGS; a cap not named here (DEFAULT, the AMX levels) keeps them all.
ISA_CAP_ENV = "ONEDNN_MAX_CPU_ISA"
_KEPT_UNDER_CAP = {
    "SSE41": (),
    "AVX": (),
    "AVX2": ("avx2", "fma"),
    "AVX2_VNNI": ("avx2", "fma", "avx_vnni"),
    "AVX2_VNNI_2": ("avx2", "fma", "avx_vnni"),
    "AVX512_CORE": ("avx2", "fma", "avx512f", "avx512bw"),
    "AVX512_CORE_VNNI": ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni"),
    "AVX512_CORE_BF16": ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"),
    "AVX512_CORE_FP16": ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"),
    "AVX10_1_512": ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"),
}


def isa_cap() -> str | None:
    """The instruction-set cap this process runs under (ONEDNN_MAX_CPU_ISA), None when there is
    none or it takes nothing away."""
    cap = os.environ.get(ISA_CAP_ENV, "").strip().upper()
    if cap not in _KEPT_UNDER_CAP:
        return None
    return cap if set(ISA_FLAGS) & cpuinfo_flags() - set(_KEPT_UNDER_CAP[cap]) else None


def cpu_flags() -> frozenset[str]:
    """The CPU's flags, less the instruction sets above the cap when one is set."""
    flags = cpuinfo_flags()
    cap = isa_cap()
    return flags if cap is None else flags - (set(ISA_FLAGS) - set(_KEPT_UNDER_CAP[cap]))


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
    """A short name for the CPU class a figure holds on, e.g. "avx512-vnni-bf16" or "avx2"; under
    an instruction-set cap, the class the engines see and the CPU's own, e.g.
    "avx2-on-avx512-vnni-bf16": a cap reaches OpenVINO's oneDNN kernels but not every kernel
    (onnxruntime's and some of OpenVINO's read the CPU themselves), so its figures are not a real
    AVX2 machine's and are never mixed with them."""
    if isa_cap() is None:
        return _class_of(cpu_flags())
    return f"{_class_of(cpu_flags())}-on-{_class_of(cpuinfo_flags())}"


def _class_of(all_flags: frozenset[str]) -> str:
    flags = set(all_flags) & set(ISA_FLAGS)
    if "amx_tile" in flags:
        return "amx"
    if "avx512f" in flags:
        return "avx512" + ("-vnni" if "avx512_vnni" in flags else "") + ("-bf16" if "avx512_bf16" in flags else "")
    if "avx2" in flags:
        return "avx2" + ("-vnni" if "avx_vnni" in flags else "")
    return platform.machine().lower() or "unknown"


def machine() -> dict[str, object]:
    """What a measured figure depends on: the CPU, its instruction sets and its cores."""
    facts: dict[str, object] = {"cpu": cpu_model(), "class": cpu_class(), "flags": isa_flags(),
                                "cores": physical_cores(), "arch": platform.machine()}
    if isa_cap() is not None:
        facts["isa_cap"] = isa_cap()
        facts["cpu_flags"] = [flag for flag in ISA_FLAGS if flag in cpuinfo_flags()]
    return facts
