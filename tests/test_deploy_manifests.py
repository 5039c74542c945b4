"""The Kubernetes manifests in deploy/kubernetes/, checked offline against the schemas and the code.

Every YAML document there is accounted for: kustomizations, the files they list, their patches,
the Prometheus adapter rules and the KEDA ScaledObject. Each kustomization is rendered by a small
resolver here (resources, components, strategic merge patches, images; anything else is refused)
and every object it yields is validated against the Kubernetes JSON schemas (kubernetes-validate,
strict). Then the rendered objects are checked against the code they deploy: the Services select
the Deployments' pods and name their ports, the probes hit public routes of the gateway's route
table, the container args parse with `xscore serve`'s own parser (with the container's env, as
the process would see it), the grace period outlasts the drain, the autoscalers scale the
Deployment on a metric that metrics.py registers. Where kubectl is installed, the resolver's
output is compared with `kubectl kustomize`.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from starlette.routing import Match, Route

kubernetes_validate = pytest.importorskip("kubernetes_validate")

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy" / "kubernetes"
DOCKERFILE = ROOT / "Dockerfile"
RESULTS = ROOT / "benchmarks" / "results"

# Fixed, so that a kubernetes-validate upgrade cannot change what passes; the pyproject's test extra
# asks for kubernetes-validate>=1.31, which ships this version's schemas.
KUBERNETES_VERSION = "1.31.0"

ADAPTER_RULES = DEPLOY / "prometheus-adapter-rules.yaml"
KEDA = DEPLOY / "keda-scaledobject.yaml"
KUSTOMIZATIONS = sorted(path.parent for path in DEPLOY.rglob("kustomization.yaml"))
BUILDS = [path for path in KUSTOMIZATIONS if yaml.safe_load(path.joinpath("kustomization.yaml").read_text())["kind"]
          == "Kustomization"]
KUSTOMIZE_KINDS = {"Kustomization": "kustomize.config.k8s.io/v1beta1", "Component": "kustomize.config.k8s.io/v1alpha1"}

SCORER = "xscore"  # the scorer Deployment's name, which the autoscalers target
STOP_GRACE_S = 1.0  # Runtime.shutdown: the servers' stop grace after the drain


def _rel(path: Path) -> str:
    return path.relative_to(DEPLOY).as_posix()


def _documents(path: Path) -> list[dict]:
    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    for doc in documents:
        assert isinstance(doc, dict), f"{_rel(path)}: a document that is not a mapping"
    return documents


# --- the kustomize resolver -------------------------------------------------------------------

# Strategic merge: lists merged item by item on these keys (their patchMergeKey in the API), and
# lists that a patch replaces whole. A patch with any other list is refused rather than guessed.
MERGE_KEYS = {"containers": "name", "initContainers": "name", "env": "name", "volumes": "name",
              "volumeMounts": "mountPath"}
ATOMIC_LISTS = {"args", "command", "tolerations", "items"}


def strategic_merge(base: Any, patch: Any, key: str = "") -> Any:
    if isinstance(patch, dict) and isinstance(base, dict):
        merged = dict(base)
        for name, value in patch.items():
            if value is None:
                merged.pop(name, None)
            elif name in merged:
                merged[name] = strategic_merge(merged[name], value, name)
            else:
                merged[name] = copy.deepcopy(value)
        return merged
    if isinstance(patch, list):
        if key in MERGE_KEYS and isinstance(base, list):
            merge_key = MERGE_KEYS[key]
            merged = [copy.deepcopy(item) for item in base]
            for item in patch:
                index = next((i for i, old in enumerate(merged) if old.get(merge_key) == item[merge_key]), None)
                if index is None:
                    merged.append(copy.deepcopy(item))
                else:
                    merged[index] = strategic_merge(merged[index], item, key)
            return merged
        if key in ATOMIC_LISTS or key in MERGE_KEYS:
            return copy.deepcopy(patch)
        raise NotImplementedError(f"the test's resolver does not know how to merge the list {key!r}")
    return copy.deepcopy(patch)


def _group(api_version: str) -> str:
    return api_version.split("/")[0] if "/" in api_version else ""


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(name) == value for name, value in selector.items())


def _target_matches(target: dict, obj: dict) -> bool:
    allowed = {"group", "version", "kind", "name", "labelSelector"}
    assert set(target) <= allowed, f"patch target fields the resolver does not handle: {set(target) - allowed}"
    if "group" in target and _group(obj["apiVersion"]) != target["group"]:
        return False
    if "version" in target and obj["apiVersion"].split("/")[-1] != target["version"]:
        return False
    if "kind" in target and obj["kind"] != target["kind"]:
        return False
    if "name" in target and obj["metadata"]["name"] != target["name"]:
        return False
    if "labelSelector" in target:
        wanted = dict(term.split("=", 1) for term in target["labelSelector"].split(","))
        if not _selects(wanted, obj["metadata"].get("labels", {})):
            return False
    return True


def _retag(image: str, rule: dict) -> str:
    name, tag = (image.rsplit(":", 1) + [""])[:2] if ":" in image.rsplit("/", 1)[-1] else (image, "")
    if name != rule["name"]:
        return image
    name = rule.get("newName", name)
    tag = rule.get("newTag", tag)
    return f"{name}:{tag}" if tag else name


def _pod_spec(obj: dict) -> dict | None:
    return obj["spec"]["template"]["spec"] if obj["kind"] == "Deployment" else None


def kustomize(directory: Path, kind: str = "Kustomization", accumulated: list[dict] | None = None) -> list[dict]:
    """What `kustomize build directory` yields, for the features these manifests use."""
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    where = _rel(directory / "kustomization.yaml")
    assert spec.get("kind") == kind and spec.get("apiVersion") == KUSTOMIZE_KINDS[kind], \
        f"{where}: expected a {kind} ({KUSTOMIZE_KINDS[kind]})"
    unknown = set(spec) - {"apiVersion", "kind", "resources", "components", "patches", "images"}
    assert not unknown, f"{where}: fields the test's resolver does not render: {sorted(unknown)}"
    objects = list(accumulated or [])
    for entry in spec.get("resources", []):
        path = (directory / entry).resolve()
        objects += kustomize(path) if path.is_dir() else _documents(path)
    for entry in spec.get("components", []):
        objects = kustomize((directory / entry).resolve(), "Component", objects)
    for entry in spec.get("patches", []):
        assert set(entry) <= {"path", "target"}, f"{where}: only file patches, optionally with a target"
        patch = yaml.safe_load((directory / entry["path"]).read_text())
        target = entry.get("target") or {"group": _group(patch["apiVersion"]), "kind": patch["kind"],
                                         "name": patch["metadata"]["name"]}
        hits = [index for index, obj in enumerate(objects) if _target_matches(target, obj)]
        assert hits, f"{where}: patch {entry['path']} matches no object"
        for index in hits:
            name = objects[index]["metadata"]["name"]
            objects[index] = strategic_merge(objects[index], patch)
            objects[index]["metadata"]["name"] = name  # with a target, the patch's own name is ignored
    for rule in spec.get("images", []):
        for obj in objects:
            pod = _pod_spec(obj)
            for container in (pod or {}).get("containers", []) + (pod or {}).get("initContainers", []):
                container["image"] = _retag(container["image"], rule)
    keys = [(obj["apiVersion"], obj["kind"], obj["metadata"]["name"]) for obj in objects]
    duplicated = {key for key in keys if keys.count(key) > 1}
    assert not duplicated, f"{where}: objects given twice: {duplicated}"
    return objects


# --- what the code says ------------------------------------------------------------------------

def _dockerfile() -> dict[str, Any]:
    text = DOCKERFILE.read_text()
    uid = re.search(r"useradd\b[^\n]*--uid\s+(\d+)", text)
    cache = re.findall(r"XSCORE_CACHE=(\S+)", text)
    entrypoint = re.search(r"^ENTRYPOINT\s+(\[.*\])", text, re.MULTILINE)
    assert uid and cache and entrypoint, "the Dockerfile no longer says its uid, cache or entrypoint"
    return {"uid": int(uid.group(1)), "cache": cache[-1], "entrypoint": json.loads(entrypoint.group(1))}


def _registry() -> CollectorRegistry:
    """The registry a serving process exposes at /metrics: the scoring path's and the gateway's."""
    from xscore.gateway.app import create_app
    from xscore.service.serving.metrics import Metrics

    metrics = Metrics()
    create_app(object(), metrics_registry=metrics.registry)  # type: ignore[arg-type]
    return metrics.registry


def metric_types() -> dict[str, str]:
    return {family.name: family.type for family in _registry().collect()}


def gateway_routes() -> list[Route]:
    from xscore.gateway.app import create_app

    app = create_app(object(), metrics_registry=CollectorRegistry())  # type: ignore[arg-type]
    return [route for route in app.routes if isinstance(route, Route)]


def route_for(path: str) -> Route | None:
    scope = {"type": "http", "path": path, "method": "GET"}
    for route in gateway_routes():
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route
    return None


def default_drain_timeout() -> float:
    from xscore.service.serving.runtime import ServeConfig

    (field,) = [f for f in dataclasses.fields(ServeConfig) if f.name == "drain_timeout_s"]
    return float(field.default)


def measured_peak_rss_mib() -> float:
    """The highest serving peak RSS in the committed results of `xscore bench` and the reliability
    runs (all against `xscore serve` of the default model)."""
    files = sorted(RESULTS.glob("bench-*/*/results.json")) + sorted(RESULTS.glob("reliability-*.json"))

    def peaks(value: Any) -> Iterator[float]:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "peak_rss_mib" and isinstance(item, (int, float)):
                    yield float(item)
                else:
                    yield from peaks(item)
        elif isinstance(value, list):
            for item in value:
                yield from peaks(item)

    found = [peak for path in files for peak in peaks(json.loads(path.read_text()))]
    assert found, f"no peak_rss_mib in {RESULTS}"
    return max(found)


def benchmark_cores() -> set[int]:
    cores = set()
    for path in RESULTS.glob("bench-*/*/results.json"):
        cores.add(json.loads(path.read_text())["setup"]["machine"]["cores"])
    assert cores
    return cores


_UNITS = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity(value: str | float) -> float:
    number, unit = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(value)).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def container_env(container: dict, pod: dict, objects: list[dict]) -> dict[str, str]:
    """The XSCORE_* environment the process sees: literal values, resource fields, and the
    service links the kubelet adds unless the pod turns them off."""
    env: dict[str, str] = {}
    if pod.get("enableServiceLinks", True):
        for service in (obj for obj in objects if obj["kind"] == "Service"):
            if service["spec"].get("clusterIP") == "None":
                continue  # no links for headless Services
            prefix = service["metadata"]["name"].upper().replace("-", "_")
            port = service["spec"]["ports"][0]
            env[f"{prefix}_SERVICE_HOST"] = "10.0.0.1"
            env[f"{prefix}_SERVICE_PORT"] = str(port["port"])
            env[f"{prefix}_PORT"] = f"tcp://10.0.0.1:{port['port']}"
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
            continue
        ref = item.get("valueFrom", {}).get("resourceFieldRef")
        assert ref, f"{item['name']}: the test only resolves literal values and resource fields"
        kind, resource = ref["resource"].split(".", 1)
        amount = container.get("resources", {}).get(kind, {}).get(resource)
        assert amount is not None, f"{item['name']} reads {ref['resource']}, which the container does not set"
        env[item["name"]] = str(math.ceil(quantity(amount) / quantity(ref.get("divisor", "1"))))
    return env


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    try:
        for name in [name for name in os.environ if name.startswith("XSCORE_")]:
            del os.environ[name]
        os.environ.update(env)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def parse_serve(container: dict, pod: dict, objects: list[dict]) -> argparse.Namespace:
    """The container's args through the `xscore` parser, built under the container's environment
    (the flags' defaults come from XSCORE_* variables when the parser is built)."""
    from xscore.service.cli import build_parser

    assert "command" not in container, f"{container['name']}: keep the image's entrypoint (xscore)"
    args = container.get("args", [])
    assert args[:1] == ["serve"], f"{container['name']}: args {args} do not run `xscore serve`"
    env = container_env(container, pod, objects)
    with environment(env):
        try:
            return build_parser().parse_args(args)
        except SystemExit:
            pytest.fail(f"{container['name']}: `xscore {' '.join(args)}` does not parse")
        except ValueError as error:  # a flag's default read from the env: int("tcp://...")
            pytest.fail(f"{container['name']}: the environment breaks `xscore serve`'s parser ({error}); "
                        f"XSCORE_* variables: { {k: v for k, v in env.items() if k.startswith('XSCORE_')} }")


# --- fixtures ------------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=BUILDS, ids=_rel)
def build(request) -> tuple[Path, list[dict]]:
    return request.param, kustomize(request.param)


def _deployments(objects: list[dict]) -> list[dict]:
    return [obj for obj in objects if obj["kind"] == "Deployment"]


def _xscore_containers(objects: list[dict]) -> Iterator[tuple[dict, dict, dict]]:
    """(deployment, pod spec, container) for every container that runs the xscore image's server."""
    for deployment in _deployments(objects):
        pod = _pod_spec(deployment)
        for container in pod["containers"]:
            yield deployment, pod, container


def _port(container: dict, port: str | int) -> dict | None:
    return next((item for item in container.get("ports", []) if port in (item.get("name"), item["containerPort"])),
                None)


# --- every document ------------------------------------------------------------------------------

def test_every_yaml_document_is_accounted_for_and_valid():
    files = sorted(DEPLOY.rglob("*.y*ml"))
    referenced: set[Path] = set()
    patches: set[Path] = set()
    for directory in KUSTOMIZATIONS:
        spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
        for entry in spec.get("resources", []) + spec.get("components", []):
            path = (directory / entry).resolve()
            assert path.exists(), f"{_rel(directory)}: lists {entry}, which does not exist"
            if path.is_file():
                referenced.add(path)
        patches |= {(directory / entry["path"]).resolve() for entry in spec.get("patches", [])}
    validated = 0
    for path in files:
        if path.name == "kustomization.yaml":
            continue
        if path in patches:
            assert path not in referenced, f"{_rel(path)} is both a patch and a resource"
            continue  # partial objects: validated as part of the builds they patch
        if path == ADAPTER_RULES:
            (doc,) = _documents(path)
            assert "apiVersion" not in doc and set(doc) <= {"rules", "externalRules", "resourceRules"}
            continue
        if path == KEDA:
            continue  # a KEDA CRD: checked structurally below
        assert path in referenced, f"{_rel(path)} is in no kustomization (an orphan the builds never apply)"
        for doc in _documents(path):
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            validated += 1
    assert validated >= 5


def test_the_readme_names_every_file():
    readme = (DEPLOY / "README.md").read_text()
    for path in sorted(DEPLOY.rglob("*.y*ml")):
        assert _rel(path) in readme, f"deploy/kubernetes/README.md does not mention {_rel(path)}"


def test_every_rendered_object_validates(build):
    directory, objects = build
    assert objects, f"{_rel(directory)} renders nothing"
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{_rel(directory)}: {obj['kind']}/{obj['metadata']['name']}: {error.message} "
                        f"at {'.'.join(map(str, error.path))}")


def _normalized(value: Any) -> Any:
    """Order-free where kustomize's merge order is not ours: merged lists sorted by their key."""
    if isinstance(value, dict):
        return {key: _normalized(item) for key, item in value.items()}
    if isinstance(value, list):
        items = [_normalized(item) for item in value]
        if items and all(isinstance(item, dict) for item in items):
            key = next((k for k in ("name", "mountPath", "containerPort", "port") if all(k in i for i in items)), None)
            if key:
                return sorted(items, key=lambda item: str(item[key]))
        return items
    return value


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_the_resolver_renders_what_kubectl_kustomize_renders(build):
    directory, objects = build
    done = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    theirs = {(o["kind"], o["metadata"]["name"]): _normalized(o) for o in yaml.safe_load_all(done.stdout) if o}
    ours = {(o["kind"], o["metadata"]["name"]): _normalized(o) for o in objects}
    assert ours.keys() == theirs.keys()
    for key, rendered in ours.items():
        assert rendered == theirs[key], f"{_rel(directory)}: {key} renders differently from kubectl kustomize"


# --- cross-checks against the code ---------------------------------------------------------------

def test_services_select_deployments_and_name_their_ports(build):
    _, objects = build
    services = [obj for obj in objects if obj["kind"] == "Service"]
    assert services
    for service in services:
        name = service["metadata"]["name"]
        selected = [d for d in _deployments(objects)
                    if _selects(service["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])]
        assert selected, f"Service {name} selects no Deployment's pods"
        for deployment in selected:
            containers = _pod_spec(deployment)["containers"]
            for port in service["spec"]["ports"]:
                found = [c for c in containers if _port(c, port.get("targetPort", port["port"]))]
                assert found, (f"Service {name} port {port['name']} targets {port.get('targetPort')}, which "
                               f"Deployment {deployment['metadata']['name']} does not expose")
                container_port = _port(found[0], port.get("targetPort", port["port"]))
                assert container_port.get("protocol", "TCP") == port.get("protocol", "TCP")
    by_name = {service["metadata"]["name"]: service for service in services}
    grpc = by_name["xscore-grpc"]
    assert grpc["spec"]["clusterIP"] == "None", "the gRPC Service must be headless for client-side balancing"
    assert [(p["name"], p["port"]) for p in grpc["spec"]["ports"]] == [("grpc", 50051)]
    http = by_name["xscore-http"]
    assert http["spec"].get("type", "ClusterIP") == "ClusterIP" and http["spec"].get("clusterIP") != "None"
    assert [(p["name"], p["port"]) for p in http["spec"]["ports"]] == [("http", 8080)]


def test_deployment_selectors_match_their_pods_and_nothing_else(build):
    _, objects = build
    deployments = _deployments(objects)
    for deployment in deployments:
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert _selects(selector, deployment["spec"]["template"]["metadata"]["labels"])
        others = [d["metadata"]["name"] for d in deployments if d is not deployment
                  and _selects(selector, d["spec"]["template"]["metadata"]["labels"])]
        assert not others, f"{deployment['metadata']['name']}'s selector also takes the pods of {others}"


def test_container_args_parse_with_xscore_serve(build):
    directory, objects = build
    from xscore.service.commands import serve_cmd

    services = {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == "Service"}
    for deployment, pod, container in _xscore_containers(objects):
        args = parse_serve(container, pod, objects)
        assert args.func is serve_cmd.run
        where = f"{_rel(directory)}: {deployment['metadata']['name']}"
        assert args.host == "0.0.0.0", f"{where}: binds {args.host}, which the kubelet's probes cannot reach"
        http = _port(container, "http")
        assert http and http["containerPort"] == args.http_port, f"{where}: the http port is not --http-port"
        if args.upstream:
            # a gateway: no model of its own, and no gRPC server to declare or probe
            assert not args.model, f"{where}: --upstream with --model is refused by xscore serve"
            assert _port(container, "grpc") is None, f"{where}: a gateway serves no gRPC"
            target = args.upstream.removeprefix("dns:///")
            host, port = target.rsplit(":", 1)
            service = services.get(host.split(".")[0])
            assert service, f"{where}: --upstream {args.upstream} names no Service of this build"
            assert int(port) in [p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc"], \
                f"{where}: --upstream port {port} is not the gRPC port of Service {host}"
        else:
            grpc = _port(container, "grpc")
            assert grpc and grpc["containerPort"] == args.grpc_port, f"{where}: the grpc port is not --grpc-port"


def test_probes_hit_public_routes_and_real_ports(build):
    directory, objects = build
    for deployment, pod, container in _xscore_containers(objects):
        where = f"{_rel(directory)}: {deployment['metadata']['name']}"
        args = parse_serve(container, pod, objects)
        kinds: dict[str, str] = {}
        for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = container.get(probe_name)
            if probe is None:
                continue
            if "httpGet" in probe:
                path = probe["httpGet"]["path"]
                route = route_for(path)
                assert route is not None, f"{where}: {probe_name} GET {path} is no route of the gateway"
                assert "GET" in (route.methods or set())
                assert route.endpoint.__self__.public, f"{where}: {probe_name} {path} needs a token when auth is on"
                assert _port(container, probe["httpGet"]["port"]), f"{where}: {probe_name} port is not exposed"
                kinds[probe_name] = route.name
            elif "grpc" in probe:
                assert not args.upstream, f"{where}: a gateway (--upstream) has no gRPC server to probe"
                assert probe["grpc"]["port"] == args.grpc_port == _port(container, "grpc")["containerPort"]
                assert probe["grpc"].get("service", "") == "", "the overall status is the empty service name"
                kinds[probe_name] = "grpc-health"
            else:
                pytest.fail(f"{where}: {probe_name} is neither httpGet nor grpc")
        # liveness must not depend on models or drain (a draining pod would be killed mid-drain)
        assert kinds.get("livenessProbe") == "healthz", f"{where}: liveness should be /healthz, is {kinds}"
        assert kinds.get("readinessProbe") in ("readyz", "grpc-health"), f"{where}: readiness is {kinds}"
        if not args.upstream:
            # both transports checked: the gRPC health service and the HTTP readiness route
            assert set(kinds.values()) >= {"grpc-health", "readyz", "healthz"}, f"{where}: probes {kinds}"
            assert "startupProbe" in kinds, f"{where}: model loading needs a startupProbe's budget"
            startup = container["startupProbe"]
            budget = startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3)
            assert budget >= 120, f"{where}: {budget} s for loading the model and timing --variant auto"
        annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/scrape") == "true":
            route = route_for(annotations["prometheus.io/path"])
            assert route is not None and route.name == "metrics" and route.endpoint.__self__.public
            assert _port(container, int(annotations["prometheus.io/port"])), f"{where}: scrape port not exposed"


def _prestop_seconds(container: dict) -> float:
    pre_stop = container.get("lifecycle", {}).get("preStop", {})
    if "sleep" in pre_stop:
        return float(pre_stop["sleep"]["seconds"])
    command = pre_stop.get("exec", {}).get("command", [])
    assert command[:1] == ["sleep"] and len(command) == 2, f"{container['name']}: preStop should sleep, is {pre_stop}"
    return float(command[1])


def test_grace_period_outlasts_prestop_and_the_drain(build):
    directory, objects = build
    with environment({}):
        from xscore.service.cli import build_parser

        cli_default = build_parser().parse_args(["serve"]).drain_timeout
    assert cli_default == default_drain_timeout(), "the CLI's and ServeConfig's drain defaults disagree"
    for deployment, pod, container in _xscore_containers(objects):
        args = parse_serve(container, pod, objects)
        pre_stop = _prestop_seconds(container)
        assert pre_stop >= 3, "endpoint removal needs a few seconds before SIGTERM"
        needed = pre_stop + max(args.drain_timeout, default_drain_timeout()) + STOP_GRACE_S
        grace = pod.get("terminationGracePeriodSeconds", 30)
        assert grace > needed, (f"{_rel(directory)}: {deployment['metadata']['name']}: terminationGracePeriodSeconds "
                                f"{grace} <= preStop {pre_stop} + drain {args.drain_timeout} + stop {STOP_GRACE_S}")


def test_security_context_matches_the_image(build):
    directory, objects = build
    image = _dockerfile()
    for deployment, pod, container in _xscore_containers(objects):
        where = f"{_rel(directory)}: {deployment['metadata']['name']}"
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] == image["uid"], where
        assert context.get("fsGroup") == image["uid"], f"{where}: volumes must be writable by uid {image['uid']}"
        volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
        for each in pod["containers"] + pod.get("initContainers", []):
            security = each["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, f"{where}: {each['name']}"
            assert security["allowPrivilegeEscalation"] is False, f"{where}: {each['name']}"
            assert security["capabilities"]["drop"] == ["ALL"], f"{where}: {each['name']}"
            for mount in each.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{where}: {each['name']} mounts an undeclared volume"
        mounts = {mount["mountPath"]: volumes[mount["name"]] for mount in container.get("volumeMounts", [])}
        assert "emptyDir" in mounts.get("/tmp", {}), f"{where}: /tmp must be a writable emptyDir"
        args = parse_serve(container, pod, objects)
        if args.upstream:
            continue
        env = container_env(container, pod, objects)
        cache = env.get("XSCORE_CACHE", image["cache"])
        assert cache == image["cache"], f"{where}: XSCORE_CACHE {cache} is not the image's {image['cache']}"
        assert "emptyDir" in mounts.get(cache, {}), f"{where}: the cache {cache} must be a writable volume"
        # an emptyDir over the cache hides the image's exports: an init container of the same image
        # must copy them in (the serving install has no torch or nncf to rebuild them)
        (cache_volume,) = [m["name"] for m in container["volumeMounts"] if m["mountPath"] == cache]
        seeds = [init for init in pod.get("initContainers", [])
                 if any(m["name"] == cache_volume for m in init.get("volumeMounts", []))]
        assert seeds, f"{where}: nothing copies the image's exports into the {cache} volume"
        for seed in seeds:
            assert seed["image"] == container["image"], f"{where}: the cache is seeded from another image"
            command = seed["command"]
            assert any(part.startswith(cache) for part in command), f"{where}: {command} does not copy {cache}"
            if command[0] == "cp":
                # preserving the emptyDir's own times/mode fails for a non-root uid and fails the pod
                assert not {"-a", "-p", "--archive", "--preserve"} & set(command), f"{where}: {command}"


def test_resources_are_sized_from_the_benchmarks(build):
    directory, objects = build
    from xscore.service.serving.score_cache import DEFAULT_MAX_MB

    peak = measured_peak_rss_mib()
    for deployment, pod, container in _xscore_containers(objects):
        args = parse_serve(container, pod, objects)
        if args.upstream:
            continue
        where = f"{_rel(directory)}: {deployment['metadata']['name']}"
        resources = container["resources"]
        cpu = quantity(resources["requests"]["cpu"])
        assert cpu in benchmark_cores(), f"{where}: {cpu} CPUs; the figures were measured on {benchmark_cores()}"
        threads = container_env(container, pod, objects).get("XSCORE_THREADS")
        assert threads is not None and int(threads) == cpu, f"{where}: engine threads {threads} != the CPU request"
        score_cache = (args.score_cache_mb if args.score_cache_mb is not None else DEFAULT_MAX_MB)
        request = quantity(resources["requests"]["memory"]) / 2**20
        limit = quantity(resources["limits"]["memory"]) / 2**20
        assert request >= peak + score_cache, \
            f"{where}: memory request {request} MiB < peak {peak} + cache {score_cache}"
        assert limit >= 1.25 * peak and limit >= request, f"{where}: memory limit {limit} MiB leaves no headroom"


def test_autoscaler_targets_the_scorer_on_its_queue_metric(build):
    _, objects = build
    types = metric_types()
    (hpa,) = [obj for obj in objects if obj["kind"] == "HorizontalPodAutoscaler"]
    target = hpa["spec"]["scaleTargetRef"]
    deployments = {d["metadata"]["name"]: d for d in _deployments(objects)}
    assert target["kind"] == "Deployment" and target["apiVersion"] == "apps/v1"
    assert target["name"] == SCORER and SCORER in deployments, f"the HPA scales {target['name']}"
    pods = [m["pods"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert pods, "no Pods metric (queue depth) in the HPA"
    for metric in pods:
        name = metric["metric"]["name"]
        assert types.get(name) == "gauge", f"HPA metric {name} is no gauge of metrics.py ({sorted(types)})"
        assert name in adapter_exposed_names(), f"no Prometheus adapter rule exposes {name}"
        assert metric["target"]["type"] == "AverageValue" and quantity(metric["target"]["averageValue"]) > 0
    cpu = [m["resource"] for m in hpa["spec"]["metrics"] if m["type"] == "Resource"]
    assert [(m["name"], m["target"]["type"]) for m in cpu] == [("cpu", "Utilization")], "CPU fallback missing"
    for container in _pod_spec(deployments[target["name"]])["containers"]:
        assert "cpu" in container["resources"]["requests"], "CPU utilization needs CPU requests"
    (pdb,) = [obj for obj in objects if obj["kind"] == "PodDisruptionBudget"
              and _selects(obj["spec"]["selector"]["matchLabels"],
                           deployments[SCORER]["spec"]["template"]["metadata"]["labels"])]
    assert hpa["spec"]["minReplicas"] >= 2
    assert pdb["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"], "the PDB lets every replica go"


def adapter_exposed_names() -> set[str]:
    (doc,) = _documents(ADAPTER_RULES)
    types = metric_types()
    names = set()
    for rule in doc["rules"]:
        series = re.match(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)", rule["seriesQuery"]).group(1)  # type: ignore[union-attr]
        assert types.get(series) == "gauge", f"adapter rule reads {series}, which metrics.py does not register"
        assert {"namespace", "pod"} <= set(rule["resources"]["overrides"]), "Pods metrics need namespace and pod"
        matches = rule.get("name", {}).get("matches", "")
        assert not matches or re.search(matches, series), f"the rule's name pattern does not match {series}"
        names.add(re.sub(matches, rule["name"]["as"], series) if rule.get("name", {}).get("as") else series)
        assert "<<.Series>>" in rule["metricsQuery"] and "<<.LabelMatchers>>" in rule["metricsQuery"]
    return names


def test_keda_scaledobject_alternative():
    (scaled,) = _documents(KEDA)
    assert scaled["apiVersion"] == "keda.sh/v1alpha1" and scaled["kind"] == "ScaledObject"
    for directory in KUSTOMIZATIONS:
        assert "keda" not in (directory / "kustomization.yaml").read_text(), f"{_rel(directory)} includes KEDA"
    base = {(obj["kind"], obj["metadata"]["name"]) for obj in kustomize(DEPLOY / "base")}
    target = scaled["spec"]["scaleTargetRef"]
    assert target.get("kind", "Deployment") == "Deployment" and target.get("apiVersion", "apps/v1") == "apps/v1"
    assert target["name"] == SCORER and ("Deployment", SCORER) in base
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    types = metric_types()
    prometheus = [t for t in scaled["spec"]["triggers"] if t["type"] == "prometheus"]
    assert prometheus, "no Prometheus trigger"
    for trigger in prometheus:
        metadata = trigger["metadata"]
        assert metadata["serverAddress"].startswith("http")
        assert float(metadata["threshold"]) > 0
        names = set(re.findall(r"\b(xscore_[a-z0-9_]+)\b", metadata["query"]))
        assert names, f"the query {metadata['query']!r} names no xscore metric"
        for name in names:
            assert name in types, f"the KEDA query reads {name}, which metrics.py does not register"
    assert {t["type"] for t in scaled["spec"]["triggers"]} >= {"prometheus", "cpu"}
    assert all(set(t) <= {"type", "name", "metadata", "metricType", "authenticationRef", "useCachedMetrics"}
               for t in scaled["spec"]["triggers"])


# --- the overlays --------------------------------------------------------------------------------

def _scorer_container(objects: list[dict]) -> dict:
    (deployment,) = [d for d in _deployments(objects) if d["metadata"]["name"] == SCORER]
    (container,) = _pod_spec(deployment)["containers"]
    return container


def test_base_serves_the_cpu_image():
    objects = kustomize(DEPLOY / "base")
    assert _scorer_container(objects)["image"] == "xscore:latest"
    assert {obj["kind"] for obj in objects} == {"Deployment", "Service", "HorizontalPodAutoscaler",
                                               "PodDisruptionBudget"}


def test_gpu_overlay():
    objects = kustomize(DEPLOY / "overlays" / "gpu")
    container = _scorer_container(objects)
    (deployment,) = [d for d in _deployments(objects) if d["metadata"]["name"] == SCORER]
    pod = _pod_spec(deployment)
    assert container["image"] == "xscore:gpu"
    assert all(init["image"] == "xscore:gpu" for init in pod["initContainers"])
    assert parse_serve(container, pod, objects).device == "cuda"
    assert container["resources"]["limits"]["nvidia.com/gpu"] in ("1", 1)


def test_gateway_overlay():
    objects = kustomize(DEPLOY / "overlays" / "gateway")
    gateways = [(d, p, c) for d, p, c in _xscore_containers(objects) if parse_serve(c, p, objects).upstream]
    assert [d["metadata"]["name"] for d, _, _ in gateways] == ["xscore-gateway"]
    services = [obj for obj in objects if obj["kind"] == "Service"
                and _selects(obj["spec"]["selector"], gateways[0][0]["spec"]["template"]["metadata"]["labels"])]
    assert [service["metadata"]["name"] for service in services] == ["xscore-gateway"]


def test_auth_token_comes_from_a_mounted_secret(build):
    directory, objects = build
    for _deployment, pod, container in _xscore_containers(objects):
        env = container_env(container, pod, objects)
        assert "XSCORE_AUTH_TOKEN" not in env, "a token in the pod spec: use XSCORE_AUTH_TOKEN_FILE and a Secret"
        token_file = env.get("XSCORE_AUTH_TOKEN_FILE")
        if token_file is None:
            continue
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        files = {f"{mount['mountPath']}/{item['path']}"
                 for mount in container["volumeMounts"] if "secret" in volumes[mount["name"]] and mount.get("readOnly")
                 for item in volumes[mount["name"]]["secret"].get("items", [])}
        assert token_file in files, f"{_rel(directory)}: {token_file} is no file of a read-only Secret mount"
        assert parse_serve(container, pod, objects).auth_token_file == Path(token_file)
    if directory.name == "auth":
        assert all("XSCORE_AUTH_TOKEN_FILE" in container_env(c, p, objects) for _, p, c in _xscore_containers(objects))
