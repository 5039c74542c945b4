"""`python -m benchmarks.reliability.fuzz`: tens of thousands of malformed requests, no 5xx, no INTERNAL.

Starts `xscore serve` (the default model) on loopback and sends CASES bodies of each kind drawn by
the suite's strategies (`benchmarks/fuzzing.py`: wrong types, huge numbers, deep nesting, lone
surrogates, bytes that are no body or no message): msgpack and JSON to the three scoring routes,
protobuf to every gRPC method. Counts every status seen; passes when none is a 5xx, INTERNAL or
UNKNOWN and the server still answers a plain request. Writes
benchmarks/results/reliability-fuzz-<cpu class>.{json,md}. Minutes; never run by the tests.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from pathlib import Path

import grpc
import httpx
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from benchmarks import fuzzing
from benchmarks.reliability.overload import start_server
from xscore.service.models.hardware import cpu_class, machine

RESULTS = Path(__file__).resolve().parents[1] / "results"
ROUTES = ["/v1/score/default", "/score", "/v1/rerank"]


def fuzz(cases: int, strategy, send) -> Counter:
    seen: Counter = Counter()

    @settings(max_examples=cases, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def case(drawn) -> None:
        seen[send(drawn)] += 1

    case()
    return seen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reliability.fuzz", description=__doc__)
    parser.add_argument("--cases", type=int, default=10_000, help="cases of each kind")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    process, grpc_target, http_target = start_server(4096)
    kinds: dict[str, Counter] = {}
    try:
        with httpx.Client(base_url=f"http://{http_target}", timeout=60) as http, \
                grpc.insecure_channel(grpc_target) as channel:
            def post(content_type: str):
                def send(drawn) -> str:
                    path, body = drawn
                    return str(http.post(path, content=body, headers={"content-type": content_type}).status_code)
                return send

            def call(drawn) -> str:
                method, data = drawn
                unary = channel.unary_unary(f"/xscore.v1.Scorer/{method}", request_serializer=None,
                                            response_deserializer=None)
                try:
                    unary(data, timeout=60)
                except grpc.RpcError as error:
                    return error.code().name
                return "OK"

            routes = st.sampled_from(ROUTES)
            kinds["HTTP msgpack"] = fuzz(args.cases, st.tuples(st.just(ROUTES[0]), fuzzing.msgpack_bodies),
                                         post("application/msgpack"))
            kinds["HTTP JSON"] = fuzz(args.cases, st.tuples(routes, fuzzing.json_bodies), post("application/json"))
            kinds["HTTP JSON, any Unicode"] = fuzz(
                args.cases, st.tuples(routes, fuzzing.unicode_text.map(
                    lambda text: json.dumps({"query": text, "documents": [text], "items": [{"text": text}],
                                             "text_1": text, "text_2": [text]}).encode())),
                post("application/json"))
            kinds["gRPC"] = fuzz(args.cases, fuzzing.grpc_calls("default"), call)
            alive = http.post("/v1/rerank", json={"query": "q", "documents": ["a", "b"]}).status_code == 200
    finally:
        process.terminate()
        process.wait(60)
    broken = {kind: {status: count for status, count in seen.items()
                     if status.startswith("5") or status in ("INTERNAL", "UNKNOWN")} for kind, seen in kinds.items()}
    result = {"machine": machine(), "cases_per_kind": args.cases, "statuses": {k: dict(v) for k, v in kinds.items()},
              "broken": broken, "server_alive_after": alive,
              "holds": alive and not any(broken.values())}
    args.output.mkdir(parents=True, exist_ok=True)
    stem = args.output / f"reliability-fuzz-{cpu_class()}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Fuzz: {args.cases:,} cases of each kind ({machine()['class']})", "",
             "`xscore serve` of the default model on loopback; bodies and messages from `benchmarks/fuzzing.py`.", "",
             "| kind | cases | statuses seen | 5xx / INTERNAL / UNKNOWN |", "|---|---|---|---|"]
    for kind, seen in kinds.items():
        statuses = ", ".join(f"{status}: {count}" for status, count in sorted(seen.items()))
        lines.append(f"| {kind} | {sum(seen.values())} | {statuses} | {sum(broken[kind].values())} |")
    lines += ["", f"A plain request after the fuzz: {'answered' if alive else '**not answered**'}.", ""]
    stem.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0 if result["holds"] else 1


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
