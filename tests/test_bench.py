"""`xscore bench`: the load generator against servers of known latency, every protocol adapter
against a real server speaking it, the figures' maths, and the report a run writes."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from gateway_harness import LoopThread, loop, running_gateway, scorer  # noqa: F401
from servers import RunningServer
from starlette.applications import Starlette
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse
from starlette.routing import Route

from xscore.bench import loadgen, report, stats
from xscore.bench.loadgen import Run, Sample
from xscore.bench.protocols import HTTP_SHAPES, Failure, adapter
from xscore.bench.workloads import Request, from_jsonl, generate
from xscore.gateway.server import GatewayServer
from xscore.service.cli import main

REQUESTS = [Request("what is python", ("Python is a language.", "Snakes are reptiles.", "A third text."))]


# -- a peer of known latency: TEI's /rerank shape ---------------------------------------------

def tei_app(delay_s: float, *, one_at_a_time: bool = False, drop_one: bool = False,
            seen: list[dict] | None = None) -> Starlette:
    """Answers TEI's rerank shape after `delay_s`; one request at a time if asked (a server of
    fixed capacity), one score short if asked (a server that loses documents); every body
    received goes to `seen` if given."""
    lock = asyncio.Lock()

    async def rerank(request: HttpRequest) -> JSONResponse:
        body = await request.json()
        if seen is not None:
            seen.append(body)
        if one_at_a_time:
            async with lock:
                await asyncio.sleep(delay_s)
        else:
            await asyncio.sleep(delay_s)
        texts = body["texts"][:-1] if drop_one else body["texts"]
        return JSONResponse([{"index": index, "score": 0.5} for index, _ in enumerate(texts)])

    return Starlette(routes=[Route("/rerank", rerank, methods=["POST"])])


@contextmanager
def serving(loop_thread: LoopThread, app: Starlette) -> Iterator[str]:
    server = GatewayServer(app, "127.0.0.1", 0)
    address = loop_thread.run(server.start())
    try:
        yield f"http://{address}"
    finally:
        loop_thread.run(server.stop(grace=1))


def _run(loop_thread: LoopThread, coroutine):
    return loop_thread.run(coroutine, timeout=120)


async def _open(url: str, rate: float, duration_s: float, seed: int, connections: int = 64, **options) -> Run:
    client = adapter("tei", url, "any", connections=connections)
    try:
        return await loadgen.open_loop(client, REQUESTS, rate, duration_s=duration_s, seed=seed, progress=False,
                                       **options)
    finally:
        await client.close()


async def _closed_tei(url: str, requests, clients: int, **options) -> Run:
    client = adapter("tei", url, "any", connections=clients)
    try:
        return await loadgen.closed_loop(client, requests, clients, progress=False, **options)
    finally:
        await client.close()


async def _closed(protocol: str, target: str, model: str = "tiny", **options) -> Run:
    client = adapter(protocol, target, model, connections=2)
    try:
        return await loadgen.closed_loop(client, REQUESTS, 2, duration_s=30, max_requests=6, progress=False,
                                         **options)
    finally:
        await client.close()


# -- the maths ---------------------------------------------------------------------------------

def test_percentiles_interpolate_between_closest_ranks():
    values = [float(v) for v in range(1, 101)]
    assert stats.percentile(values, 50) == pytest.approx(50.5)
    assert stats.percentile(values, 90) == pytest.approx(90.1)
    assert stats.percentile(values, 99) == pytest.approx(99.01)
    assert stats.percentile([7.0], 99) == 7.0


def test_a_summary_leaves_out_the_warm_up_and_counts_errors_by_kind():
    samples = [Sample(0.5, 0.5, 0.6, 10),  # warm-up
               Sample(1.0, 1.0, 1.1, 10), Sample(1.5, 1.5, 1.7, 10), Sample(2.0, 2.0, 2.3, 10, "http 429"),
               Sample(2.5, 2.9, 3.0, 10)]  # sent late: its latency counts from 2.5
    summary = stats.summary(Run("open", 4, 1.0, samples))
    assert summary["requests"] == 4 and summary["answered"] == 3 and summary["errors"] == {"http 429": 1}
    assert summary["window_s"] == pytest.approx(2.0)
    assert summary["pairs_per_s"] == pytest.approx(30 / 2.0)
    assert summary["latency_ms"]["max"] == pytest.approx(500)
    assert summary["latency_ms"]["p50"] == pytest.approx(200)


def test_poisson_arrivals_are_seeded_and_keep_the_rate():
    first = loadgen.arrival_times(50, 20, seed=3)
    assert first == loadgen.arrival_times(50, 20, seed=3) != loadgen.arrival_times(50, 20, seed=4)
    assert 1000 * 0.8 < len(first) < 1000 * 1.2 and all(a < b for a, b in zip(first, first[1:]))
    assert len(loadgen.arrival_times(50, 20, seed=3, max_requests=7)) == 7


# -- the load generator against servers of known latency ----------------------------------------

def test_open_loop_sends_on_schedule_and_measures_at_least_the_service_time(loop):
    with serving(loop, tei_app(0.03)) as url:
        run = _run(loop, _open(url, 20, 2.0, seed=1))
    assert len(run.samples) == len(loadgen.arrival_times(20, 2.0, seed=1))
    assert all(sample.error is None for sample in run.samples)
    assert all(sample.latency >= 0.03 for sample in run.samples)
    assert all(sample.sent >= sample.intended - 1e-3 for sample in run.samples)  # never early


def test_open_loop_charges_a_saturated_server_for_the_requests_it_held_back(loop):
    """Capacity 20 requests/s (50 ms each, one at a time), offered 40/s for 1 s: the queue grows,
    and latencies measured from the intended send time show it (a closed loop would not)."""
    with serving(loop, tei_app(0.05, one_at_a_time=True)) as url:
        run = _run(loop, _open(url, 40, 1.0, seed=2, connections=128))
    answered = [sample for sample in run.samples if sample.error is None]
    service_time = 0.05
    assert len(answered) == len(run.samples) > 25
    # the n-th request cannot finish before n service times have passed since the first was sent
    assert max(sample.latency for sample in answered) >= (len(answered) * service_time - 1.0) * 0.9


def test_open_loop_counts_what_its_in_flight_cap_kept_it_from_sending(loop):
    with serving(loop, tei_app(0.3)) as url:
        run = _run(loop, _open(url, 50, 0.5, seed=0, connections=4, max_in_flight=2))
    kinds = {sample.error for sample in run.samples}
    assert "client saturated" in kinds and None in kinds
    assert len(run.samples) == len(loadgen.arrival_times(50, 0.5, seed=0))


def test_a_closed_loop_counts_the_answers_of_its_window_even_from_a_server_slower_than_the_warm_up(loop):
    """0.4 s a request, 2 clients, 3 documents each: 15 pairs/s. The requests sent during the
    warm-up that are answered inside the window count, so a slow server is not measured as idle."""
    with serving(loop, tei_app(0.4)) as url:
        run = _run(loop, _closed_tei(url, REQUESTS, 2, duration_s=1.2, warmup_s=0.5))
    summary = stats.summary(run)
    assert summary["window_s"] == pytest.approx(1.2, abs=0.05)
    assert summary["answered"] >= 4 and any(sample.sent < 0.5 for sample in run.measured())
    assert summary["throughput_from"] == "clients / latency"
    assert summary["pairs_per_s"] == pytest.approx(15, rel=0.05)


def test_a_closed_loop_of_rounds_longer_than_half_its_window_is_measured_at_its_rate_not_in_whole_rounds(loop):
    """4 clients, 0.4 s a request of 3 documents: 30 pairs/s. Rounds finish together at 0.4 s,
    0.8 s, ...; a window from 0.5 s to 1.4 s holds two of them, which counted as answers over
    the window would read 8 / 0.9 s x 3 = 26.7 pairs/s (and three rounds in a slightly longer
    window 40 pairs/s). Clients over latency reads 30 however the rounds fall."""
    with serving(loop, tei_app(0.4)) as url:
        run = _run(loop, _closed_tei(url, REQUESTS, 4, duration_s=0.9, warmup_s=0.5))
    answered = [sample for sample in run.samples if sample.error is None]
    # the rate over every round since the start, however slow this machine made the rounds
    whole_run = sum(sample.pairs for sample in answered) / max(sample.finished for sample in answered)
    assert stats.summary(run)["pairs_per_s"] == pytest.approx(whole_run, rel=0.06)


def test_a_server_that_answers_too_few_scores_is_a_failure_not_a_fast_answer(loop):
    with serving(loop, tei_app(0.0, drop_one=True)) as url:
        run = _run(loop, _closed("tei", url))
    assert {sample.error for sample in run.samples} == {"bad response"}


# -- every adapter against a real server speaking its shape --------------------------------------

@pytest.mark.parametrize("protocol", sorted(set(HTTP_SHAPES) - {"tei"}))
def test_each_http_adapter_against_xscores_own_route_of_that_shape(loop, scorer, protocol):
    with running_gateway(loop, scorer) as url:
        run = _run(loop, _closed(protocol, url))
    assert len(run.samples) == 6 and all(sample.error is None for sample in run.samples)
    assert stats.summary(run)["pairs_per_s"] > 0


def test_the_tei_adapter_against_a_server_of_teis_shape(loop):
    with serving(loop, tei_app(0.0)) as url:
        run = _run(loop, _closed("tei", url))
    assert [sample.error for sample in run.samples] == [None] * 6


def test_the_grpc_adapter_and_its_errors(tiny_model):
    running = RunningServer({"tiny": tiny_model})
    try:
        ok = asyncio.run(_closed("xscore-grpc", running.address))
        missing = asyncio.run(_closed("xscore-grpc", running.address, model="nope"))
    finally:
        running.stop()
    assert all(sample.error is None for sample in ok.samples)
    assert {sample.error for sample in missing.samples} == {"grpc NOT_FOUND"}


def test_http_errors_are_grouped_by_status_and_a_closed_port_by_kind(loop, scorer):
    with running_gateway(loop, scorer) as url:
        missing = _run(loop, _closed("xscore-msgpack", url, model="nope"))
    assert {sample.error for sample in missing.samples} == {"http 404"}
    closed_port = _run(loop, _closed("cohere", url))  # the gateway has stopped
    assert {sample.error for sample in closed_port.samples} == {"connect"}


def test_an_http_protocol_refuses_a_target_without_a_scheme():
    with pytest.raises(Exception) as refused:
        adapter("cohere", "127.0.0.1:8080", "m", connections=1)
    assert "http://" in str(refused.value)


def test_failure_names_its_kind():
    assert Failure("http 503", "draining").kind == "http 503"


# -- workloads -----------------------------------------------------------------------------------

def test_generated_workloads_are_deterministic_and_sized():
    assert generate("rerank-10", seed=5)[:20] == generate("rerank-10", seed=5)[:20] != generate("rerank-10", seed=6)[:20]
    assert generate("rerank-10", seed=5)[7] == generate("rerank-10", seed=5)[:8][7]
    assert {request.pairs for request in generate("rerank-100")[:16]} == {100}
    assert {request.pairs for request in generate("short")[:16]} == {1}
    mixed = generate("mixed")
    assert all(1 <= request.pairs <= 200 for request in mixed[:64])
    assert mixed.mean_pairs() == sum(request.pairs for request in mixed[:64]) / 64
    with pytest.raises(Exception) as refused:
        generate("rerank-7")
    assert "unknown workload 'rerank-7'" in str(refused.value)


def test_a_generated_workload_never_repeats_a_request():
    """A server that merges identical pairs would be measured on less work than it was offered."""
    for kind in ("short", "rerank-10", "rerank-500"):
        made = generate(kind, seed=1)[: 1500 if kind != "rerank-500" else 20]
        pairs = [(request.query, document) for request in made for document in request.documents]
        assert len(set(pairs)) == len(pairs), kind


def test_a_closed_loop_ends_at_its_time_bound_without_waiting_for_a_slow_servers_answers(loop):
    """A 5 s server and a 1 s window: the two requests out are cancelled at the bound, not awaited."""
    with serving(loop, tei_app(5.0)) as url:
        begun = time.perf_counter()
        run = _run(loop, _closed_tei(url, REQUESTS, 2, duration_s=1.0))
        took = time.perf_counter() - begun
    assert took < 4.0 and run.samples == [] and stats.summary(run)["answered"] == 0


def test_a_closed_loop_sends_each_request_of_the_workload_once(loop):
    """Clients take the workload's requests in turn: none sent twice while unsent ones remain."""
    seen: list[dict] = []
    requests = [Request(f"query {number}", ("a document",)) for number in range(400)]
    with serving(loop, tei_app(0.0, seen=seen)) as url:
        run = _run(loop, _closed_tei(url, requests, 8, duration_s=30, max_requests=120))
    queries = [body["query"] for body in seen]
    assert len(run.samples) == len(queries) >= 120
    assert len(set(queries)) == len(queries)


def test_a_requests_file_is_read_and_its_mistakes_named_by_line(tmp_path):
    path = tmp_path / "requests.jsonl"
    path.write_text('{"query": "q", "documents": ["a", "b"]}\n\n{"query": "r", "documents": ["c"]}\n')
    assert from_jsonl(path) == [Request("q", ("a", "b")), Request("r", ("c",))]
    path.write_text('{"query": "q", "documents": ["a"]}\n{"query": "q", "documents": []}\n')
    with pytest.raises(Exception) as refused:
        from_jsonl(path)
    assert f"{path}:2 must be" in str(refused.value)


# -- the command and its report ------------------------------------------------------------------

def test_the_command_writes_results_a_report_and_plots(loop, scorer, tmp_path, capsys):
    output = tmp_path / "report"
    with running_gateway(loop, scorer) as url:
        status = main(["bench", "--target", url, "--protocol", "xscore-json", "--model", "tiny", "--workload",
                       "rerank-10", "--clients", "1,2", "--duration", "1", "--warmup", "0.2", "--max-requests", "8",
                       "--server-pid", str(__import__("os").getpid()), "--output", str(output), "--quiet"])
    assert status == 0
    result = json.loads((output / "results.json").read_text())
    assert [row["level"] for row in result["runs"]] == [1, 2]
    assert all(row["answered"] == row["requests"] > 0 for row in result["runs"])
    assert all(row["server"]["peak_rss_mib"] > 0 for row in result["runs"])
    assert set(result["plots"]) == {"latency_cdf.png", "throughput_vs_concurrency.png"}
    assert all((output / name).stat().st_size > 1000 for name in result["plots"])
    markdown = (output / "report.md").read_text()
    assert "| closed | 2 |" in markdown and "server peak RSS MiB" in markdown
    assert "| closed | 1 |" in capsys.readouterr().out


def test_a_run_with_no_answer_reports_nulls_and_exits_1(tmp_path):
    status = main(["bench", "--target", "http://127.0.0.1:9", "--protocol", "cohere", "--rate", "20",
                   "--duration", "0.3", "--warmup", "0", "--output", str(tmp_path / "r"), "--quiet"])
    assert status == 1
    result = json.loads((tmp_path / "r" / "results.json").read_text())
    assert result["runs"][0]["latency_ms"]["p50"] is None and result["runs"][0]["errors"] == {
        "connect": result["runs"][0]["requests"]}


def test_a_window_shorter_than_one_answer_says_to_raise_the_duration(loop, tmp_path, caplog):
    with serving(loop, tei_app(3.0)) as url, caplog.at_level("WARNING"):
        status = main(["bench", "--target", url, "--protocol", "tei", "--clients", "1", "--duration", "0.5",
                       "--warmup", "0", "--output", str(tmp_path / "r"), "--quiet"])
    assert status == 1
    assert "closed 1: no answer arrived within the 0.5 s window" in caplog.text and "raise --duration" in caplog.text


def test_bad_levels_are_refused_with_the_flag_named(capsys):
    assert main(["bench", "--target", "http://127.0.0.1:9", "--clients", "4,zero"]) == 2
    assert "--clients takes numbers separated by commas" in capsys.readouterr().err


def test_markdown_renders_without_plots():
    setup = {"protocol": "tei", "target": "http://x", "model": "m", "workload": "short", "distinct_requests": 1,
             "pairs_per_request": 1.0, "warmup_s": 0, "duration_s": 1,
             "machine": {"cpu": "cpu", "class": "amx", "cores": 2}}
    summary = stats.summary(Run("closed", 1, 0.0, [Sample(0, 0, 0.01, 1)]))
    text = report.markdown({"setup": setup, "runs": [summary], "plots": []})
    assert "| closed | 1 | 1 | 1 |" in text and "![" not in text
