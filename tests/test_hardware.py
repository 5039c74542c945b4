"""Machine facts that engine threads and variant choices depend on, as a container sees them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from xscore.service.models import hardware
from xscore.service.models.hardware import cgroup_cpu_quota, physical_cores


def test_the_cgroup_cpu_quota_is_read_in_both_cgroup_versions(tmp_path: Path) -> None:
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_quota(v2) == pytest.approx(1.5)
    (v2 / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(v2) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(v1) == pytest.approx(2.0)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_quota(v1) is None
    assert cgroup_cpu_quota(tmp_path / "none") is None


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="this OS has no CPU affinity")
def test_engine_threads_follow_the_cpus_this_process_may_use() -> None:
    first = sorted(os.sched_getaffinity(0))[0]
    script = ("import os; os.sched_setaffinity(0, {%d})\n"
              "from xscore.service.models.hardware import physical_cores; print(physical_cores())" % first)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "1"
    assert 1 <= physical_cores() <= len(os.sched_getaffinity(0))


@pytest.mark.parametrize("variable, value, kind", [
    ("XSCORE_HTTP_PORT", "tcp://10.0.0.7:8080", "an integer"),  # a Kubernetes service link
    ("XSCORE_THREADS", "two", "an integer"),
    ("XSCORE_DRAIN_TIMEOUT", "30s", "a number"),
])
def test_a_variable_that_does_not_parse_is_named_not_a_traceback(variable, value, kind) -> None:
    done = subprocess.run([sys.executable, "-m", "xscore.service.cli", "serve", "--help"],
                          capture_output=True, text=True, env={**os.environ, variable: value}, timeout=60)
    assert done.returncode == 2
    assert f"xscore: error: {variable}={value!r} is not {kind}" in done.stderr
    assert "Traceback" not in done.stderr


ZEN4 = frozenset({"sse4_1", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"})


@pytest.mark.parametrize("cap, flags, cpu_class", [
    ("AVX2", ["avx2", "fma"], "avx2-on-avx512-vnni-bf16"),
    ("avx512_core_vnni", ["avx2", "fma", "avx512f", "avx512bw", "avx512_vnni"], "avx512-vnni-on-avx512-vnni-bf16"),
    ("AVX512_CORE_BF16", ["avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"], "avx512-vnni-bf16"),
    ("DEFAULT", ["avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"], "avx512-vnni-bf16"),
    ("SOMETHING", ["avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"], "avx512-vnni-bf16"),
])
def test_an_instruction_set_cap_takes_away_the_flags_above_it(monkeypatch, cap, flags, cpu_class) -> None:
    monkeypatch.setattr(hardware, "cpuinfo_flags", lambda: ZEN4)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert hardware.isa_flags() == flags and hardware.cpu_class() == cpu_class
    assert hardware.has_bf16() == ("avx512_bf16" in flags)
    facts = hardware.machine()
    assert facts["class"] == cpu_class
    # a cap that takes nothing away is no cap: the figures are the CPU's own
    assert ("isa_cap" in facts) == (cpu_class != "avx512-vnni-bf16")
    if "isa_cap" in facts:
        assert facts["cpu_flags"] == ["avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"]
