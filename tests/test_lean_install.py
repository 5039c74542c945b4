"""The serving install: `pip install xscore` pulls no torch, and a fresh virtualenv that follows the
README's Quick start serves the default model on every transport."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import httpx
import msgpack
import pytest
from packaging.requirements import Requirement

from xscore.client import ScorerClient

REPO = Path(__file__).resolve().parents[1]
# Torch and what drags it in; the CUDA wheels are what an unpinned torch pulls.
HEAVY = ("torch", "triton", "sentence-transformers", "transformers", "optimum", "accelerate")
LISTENING = re.compile(r"^xscore listening grpc=(\S+) http=(\S+)$")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def dependency_closure(requirements: list[str]) -> dict[str, str]:
    """{distribution: the one that required it} for the base requirements, through the installed
    metadata, extras left out as pip leaves them out for a plain `pip install xscore`."""
    required_by: dict[str, str] = {}
    stack = [(Requirement(text), "xscore") for text in requirements]
    while stack:
        requirement, parent = stack.pop()
        if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = _normal(requirement.name)
        if name in required_by:
            continue
        required_by[name] = parent
        try:
            stack.extend((Requirement(text), name) for text in distribution(name).requires or [])
        except PackageNotFoundError:
            pass  # not installed here: its own requirements are unknown, its name is still checked
    return required_by


def test_the_serving_install_pulls_no_torch_and_no_cuda_wheels() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    closure = dependency_closure(project["dependencies"])
    assert "onnxruntime-gpu" in closure and "tokenizers" in closure  # the walk reached the base
    heavy = {name: parent for name, parent in closure.items()
             if name in HEAVY or name.startswith("nvidia-")}
    assert not heavy, f"the serving install would pull {heavy} (name: required by)"
    # ... and the closure test itself can see torch where it is: through the export extra
    export = dependency_closure(project["optional-dependencies"]["export"])
    assert "torch" in export


def _copy_of_the_repository(destination: Path) -> Path:
    """The committed and working files, as a fresh clone would have them (no .venv, no build)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                            cwd=REPO, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    return destination


@pytest.mark.timeout(900)
def test_a_fresh_virtualenv_following_the_quick_start_serves_every_transport(tmp_path: Path) -> None:
    checkout = _copy_of_the_repository(tmp_path / "xscore")
    venv = checkout / ".venv"
    started = time.monotonic()
    # The Quick start's first command, less its `xscore serve` (started below on free ports).
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    installed = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "-e", "."], cwd=checkout,
                               capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr[-4000:]
    installed_s = time.monotonic() - started
    names = subprocess.run([str(venv / "bin" / "pip"), "list", "--format=freeze"], capture_output=True,
                           text=True, check=True).stdout
    distributions = {_normal(line.split("==")[0]) for line in names.splitlines() if "==" in line}
    assert not {name for name in distributions if name in HEAVY or name.startswith("nvidia-")}
    assert "xscore" in distributions

    environment = {key: value for key, value in os.environ.items() if not key.startswith("XSCORE_")}
    environment.update(XSCORE_CACHE=str(tmp_path / "cache"), HF_HUB_OFFLINE="1")
    server = subprocess.Popen([str(venv / "bin" / "xscore"), "serve", "--grpc-port", "0", "--http-port", "0"],
                              cwd=tmp_path, env=environment, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline().strip()
        match = LISTENING.match(line)
        assert match, f"no listening line, got {line!r}; stderr: {server.stderr.read()[-4000:] if not line else ''}"
        listening_s = time.monotonic() - started
        grpc_address, http_address = match.groups()
        query = "backup tool with encryption"
        documents = ["An image viewer for the desktop.",
                     "Creates encrypted, deduplicated backups of your files to local disks or remote servers.",
                     "Documentation for the Perl programming language."]
        with ScorerClient(grpc_address) as client:
            by_grpc = [item.score for item in sorted(client.score(query, documents).scores,
                                                     key=lambda item: item.index)]
        body = {"query": {"text": query}, "items": [{"text": text} for text in documents]}
        packed = httpx.post(f"http://{http_address}/v1/score/default", content=msgpack.packb(body),
                            headers={"Content-Type": "application/msgpack"}, timeout=60)
        assert packed.status_code == 200 and packed.headers["content-type"].startswith("application/msgpack")
        by_msgpack = [row["score"] for row in sorted(msgpack.unpackb(packed.content)["scores"],
                                                     key=lambda row: row["index"])]
        reranked = httpx.post(f"http://{http_address}/v1/rerank", json={"query": query, "documents": documents},
                              timeout=60)
        assert reranked.status_code == 200, reranked.text
        by_json = [row["relevance_score"] for row in sorted(reranked.json()["results"],
                                                           key=lambda row: row["index"])]
        assert by_grpc == pytest.approx(by_msgpack, abs=1e-6) and by_grpc == pytest.approx(by_json, abs=1e-6)
        assert max(range(3), key=by_grpc.__getitem__) == 1, by_grpc
    finally:
        server.terminate()
        server.wait(60)
    print(f"fresh venv: install {installed_s:.0f} s, listening after {listening_s:.0f} s in all")
