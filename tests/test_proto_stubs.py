"""The committed gRPC stubs are exactly what grpcio-tools generates from proto/ today."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ("score_pb2.py", "score_pb2.pyi", "score_pb2_grpc.py")


def test_committed_stubs_are_not_stale(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", str(ROOT / "proto"), f"--python_out={tmp_path}",
         f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}", str(ROOT / "proto/xscore/v1/score.proto")],
        check=True,
    )
    for name in GENERATED:
        fresh = (tmp_path / "xscore/v1" / name).read_text()
        committed = (ROOT / "proto/xscore/v1" / name).read_text()
        assert fresh == committed, f"proto/xscore/v1/{name} is stale: regenerate it (see README)"
