"""A model's own labelled ranking set: the export gates lossy variants on it, set by set."""

from __future__ import annotations

import dataclasses
import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scoring import score_pairs

from xscore.api.errors import XscoreError
from xscore.service.models.export import export
from xscore.service.models.fidelity import Fidelity, Gate
from xscore.service.models.ranking import (
    OWN_RANKING_FILE,
    Query,
    load_ranking_set,
    ranking_fidelity,
    ranking_set,
    save_ranking_set,
)
from xscore.service.models.variants import BY_NAME


def test_labelled_queries_are_judged_by_the_ratio_of_mean_ndcg_against_the_labels():
    queries = [Query("a", ["x", "y", "z"], [0.0, 1.0, 0.0]), Query("b", ["x", "y", "z"], [1.0, 0.0, 0.0])]
    reference = [np.array([0.0, 2.0, 1.0]), np.array([0.0, 1.0, 2.0])]  # a: answer 1st; b: answer 3rd
    candidate = [np.array([0.0, 1.0, 2.0]), np.array([0.0, 1.0, 2.0])]  # a: answer 2nd; b: as the reference
    figures = ranking_fidelity(queries, reference, candidate)
    expected = (1 / np.log2(3) + 1 / np.log2(4)) / (1.0 + 1 / np.log2(4))
    assert figures.ndcg10_ratio == pytest.approx(expected)
    # a variant that finds the answer the reference missed scores above it
    better = ranking_fidelity(queries, reference, [reference[0], np.array([2.0, 1.0, 0.0])])
    assert better.ndcg10_ratio > 1.0 and better.unfallen_share == 1.0


def test_the_own_set_gate_counts_the_queries_ranked_worse_however_many_rank_better():
    queries = [Query("a", ["x", "y", "z"], [0.0, 1.0, 0.0]), Query("b", ["x", "y", "z"], [1.0, 0.0, 0.0])]
    reference = [np.array([0.0, 2.0, 1.0]), np.array([0.0, 1.0, 2.0])]  # a: answer 1st; b: answer 3rd
    swapped = [np.array([0.0, 1.0, 2.0]), np.array([2.0, 1.0, 0.0])]  # a: answer 2nd; b: answer 1st
    figures = ranking_fidelity(queries, reference, swapped)
    fall = 1.0 - 1 / np.log2(3)  # a's answer from 1st to 2nd
    assert figures.ndcg10_ratio > 1.0  # b gained more than a lost
    assert figures.unfallen_share == pytest.approx(1.0 - fall / (1.0 + 1 / np.log2(4)))
    gate = Gate(min_own_unfallen_share=0.995)
    probe = Fidelity(max_abs_diff=0.0, spearman=1.0, top10_agreement=1.0, pairs=3)
    (problem,) = gate.failures(probe, None, {"wordnet": figures})
    assert "on the model's own wordnet set (2 queries; net 1" in problem
    assert gate.failures(probe, None, {"wordnet": ranking_fidelity(queries, reference, reference)}) == []


def test_a_ranking_set_file_round_trips_by_set_and_refuses_rows_that_do_not_hold_together(tmp_path):
    path = tmp_path / OWN_RANKING_FILE
    with_reference = [(Query("q1", ["a", "b"], [1.0, 0.0]), [0.5, -0.5])]
    without = [(Query("q2", ["c", "d", "e"], [0.0, 0.0, 1.0]), None)]
    save_ranking_set({"one": with_reference, "two": without}, path)
    first = path.read_bytes()
    save_ranking_set({"one": with_reference, "two": without}, path)
    assert path.read_bytes() == first  # no timestamp in the gzip header
    loaded = load_ranking_set(path)
    assert list(loaded) == ["one", "two"]
    assert loaded["one"][0] == [with_reference[0][0]] and loaded["one"][1][0].tolist() == [0.5, -0.5]
    assert loaded["two"] == ([without[0][0]], None)
    with pytest.raises(ValueError, match="no relevance labels"):
        save_ranking_set({"one": [(Query("q", ["a"]), None)]}, tmp_path / "bad.jsonl.gz")
    for row, reason in (({"candidates": ["a", "b"], "relevance": [1]}, "differ in length"),
                        ({"candidates": ["a"], "relevance": [0]}, "a relevant one")):
        with gzip.open(tmp_path / "bad.jsonl.gz", "wt") as sink:
            sink.write(json.dumps({"set": "s", "query": "q", **row}) + "\n")
        with pytest.raises(ValueError, match=reason):
            load_ranking_set(tmp_path / "bad.jsonl.gz")


def _labelled(tiny_model) -> tuple[list, list]:
    """Queries the tiny model's fp32 export ranks with a clear winner: (labelled with the answer it
    ranks first, no reference given), and (labelled with the one it ranks last, with a reference
    that ranks that one first)."""
    kept, lost = [], []
    for query in ranking_set(12, 8):
        raw = score_pairs(tiny_model, [query.text], query.candidates, raw=True).scores.astype(np.float64)
        top, runner_up = np.sort(raw)[::-1][:2]
        if top - runner_up < 1e-4:
            continue  # fp32 engines agree to about 1e-6; a closer tie at the top could go either way
        first, last = int(np.argmax(raw)), int(np.argmin(raw))
        kept.append((Query(query.text, query.candidates, [float(i == first) for i in range(len(raw))]), None))
        reference = raw.copy()
        reference[last] = raw.max() + 10.0
        lost.append((Query(query.text, query.candidates, [float(i == last) for i in range(len(raw))]),
                     reference.tolist()))
    assert len(kept) >= 4, "the tiny model should separate its top candidate on most queries"
    return kept[:4], lost[:4]


def test_a_variant_that_loses_a_sets_answers_is_refused_naming_that_set(tiny_model, tiny_model_dir, tmp_path):
    kept, lost = _labelled(tiny_model)
    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    save_ranking_set({"kept": kept, "lost": lost}, model / OWN_RANKING_FILE)
    # the fp32 copy itself, under a gate that reads the model's own sets
    row = dataclasses.replace(BY_NAME["fp32"], name="judged", gate=Gate(min_own_unfallen_share=0.995))
    with pytest.raises(XscoreError, match=r"variant judged .* refused: NDCG@10 against the labels kept on the "
                                          r"queries it ranks worse \d+\.\d+% of the reference's < 99\.5% on the "
                                          r"model's own lost set \(4 queries; net \d+\.\d+%\)") as caught:
        export(str(model), [row], root=tmp_path / "cache", progress=False)
    figures = caught.value.details["ranking_own"]
    assert figures["kept"]["ndcg10_ratio"] == 1.0 and figures["lost"]["ndcg10_ratio"] < 0.5
    assert "kept set" not in caught.value.message

    save_ranking_set({"kept": kept}, model / OWN_RANKING_FILE)  # a new identity: judged again
    passed = export(str(model), [row], root=tmp_path / "cache", progress=False)["judged"]
    assert set(passed.manifest.ranking_own) == {"kept"}
    assert passed.manifest.ranking_own["kept"]["ndcg10_ratio"] == 1.0
    assert passed.manifest.ranking_own["kept"]["queries"] == 4


def test_an_unreadable_ranking_set_is_a_clear_model_error(tiny_model_dir, tmp_path):
    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    (model / OWN_RANKING_FILE).write_bytes(b"not gzip")
    row = dataclasses.replace(BY_NAME["fp32"], name="judged", gate=Gate(min_own_unfallen_share=0.995))
    with pytest.raises(XscoreError, match="its own ranking set cannot be read"):
        export(str(model), [row], root=tmp_path / "cache", progress=False)


def test_the_default_model_carries_validation_text_scored_by_its_own_weights(cache_dir):
    """The shipped set: Debian and WordNet, no evaluation query among them, recorded in the card,
    copied into the materialized model, and its references are what the fp32 export scores."""
    from xscore.recipes.default_model import shipped_eval_sets
    from xscore.service.models.activation import activation_from_config
    from xscore.service.models.defaultmodel import ARTIFACT_DIR, CARD_FILE, sha256_file
    from xscore.service.models.engines.onnxruntime import OnnxRuntimeEngine
    from xscore.service.models.ranking import RankingCheck
    from xscore.service.models.registry import default_spec
    from xscore.service.models.sources import read_config, resolve_source
    from xscore.service.models.tokenization import PairTokenizer

    shipped = ARTIFACT_DIR / OWN_RANKING_FILE
    card = json.loads((ARTIFACT_DIR / CARD_FILE).read_text())["ranking_set"]
    assert card["file"] == OWN_RANKING_FILE and card["sha256"] == sha256_file(shipped)
    sets = load_ranking_set(shipped)
    assert {name: len(queries) for name, (queries, _) in sets.items()} == card["queries"]
    assert set(sets) == {"debian", "wordnet"} and all(references is not None for _, references in sets.values())
    evaluated = {item.query for items in shipped_eval_sets().values() for item in items}
    assert not evaluated & {query.text for queries, _ in sets.values() for query in queries}

    model_dir = resolve_source(default_spec().source).local_dir
    assert (model_dir / OWN_RANKING_FILE).read_bytes() == shipped.read_bytes()
    fp32 = export(str(model_dir), ["fp32"], root=cache_dir, progress=False)["fp32"].path / "model.onnx"
    for queries, references in sets.values():
        check = RankingCheck(fp32, PairTokenizer.from_dir(fp32.parent), activation_from_config(read_config(fp32.parent)),
                             queries[:3], references[:3])
        figures = check.measure(OnnxRuntimeEngine(fp32, device="cpu"))
        assert figures.max_abs_diff <= 1e-4 and figures.ndcg10_ratio == 1.0
