"""The default model's own ranking set: labelled validation text the export gates lossy variants on.

The stdlib ranking set judges whether a variant orders candidates as the fp32 export does; it has
no labels, and its text is not the model's. Static int8 of recipe 5's weights passed it (ranking
Spearman 0.9933, NDCG@10 99.81% on stdlib docstrings) and still lost 1.34% of Debian NDCG@10
against the labels. This set carries the model's own task: Debian and WordNet validation queries
(never trained on, never evaluation queries: `validation.validation_sets`) with their right answer
among mined candidates, and the PyTorch model's logits for every pair, so the serving side needs
neither torch nor an fp32 run to judge a variant against the reference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from xscore.recipes.default_model.data import Embed, EvalQuery
from xscore.recipes.default_model.train import Recipe
from xscore.service.models.ranking import Query, save_ranking_set

# per set: enough queries that one answer moving a place is a small part of the bar's 0.5%, few
# enough that the first start judges every lossy variant on them in seconds
DEBIAN_QUERIES = 120
WORDNET_QUERIES = 160
CANDIDATES = 20


def ranking_sets(recipe: Recipe, embed: Embed, data_dir: Path | None = None,
                 artifact_dir: Path | None = None) -> dict[str, list[EvalQuery]]:
    """Debian and WordNet validation queries, `CANDIDATES` candidates each (the right answer kept)."""
    from xscore.recipes.default_model.validation import validation_sets

    sets = validation_sets(recipe, embed, max(DEBIAN_QUERIES, WORDNET_QUERIES), data_dir, artifact_dir)
    return {"debian": [trimmed(item) for item in sets["debian"][:DEBIAN_QUERIES]],
            "wordnet": [trimmed(item) for item in sets["wordnet"][:WORDNET_QUERIES]]}


def trimmed(item: EvalQuery) -> EvalQuery:
    """The first `CANDIDATES` candidates, with the right answer in its place among them (or last)."""
    right = item.relevance.index(1)
    keep = [i for i in range(len(item.candidates)) if i != right][:CANDIDATES - 1]
    keep.insert(min(right, len(keep)), right)
    return EvalQuery(item.query, [item.candidates[i] for i in keep], [item.relevance[i] for i in keep])


def write_ranking_set(sets: Mapping[str, Sequence[EvalQuery]], logits, path: Path) -> Path:
    """Save the sets with the reference's raw logits (`logits(pairs) -> array`) for every pair."""
    rows: dict[str, list[tuple[Query, list[float]]]] = {}
    for name, items in sets.items():
        rows[name] = [(Query(item.query, list(item.candidates), [float(r) for r in item.relevance]),
                       [float(x) for x in logits([(item.query, c) for c in item.candidates])]) for item in items]
    save_ranking_set(rows, path)
    return path


def make_ranking_set(artifact_dir: Path, recipe: Recipe, embed: Embed, data_dir: Path | None = None) -> Path:
    """The ranking set of the weights in artifact_dir, scored by them in torch fp32, written
    beside them (`OWN_RANKING_FILE`) and recorded in their card."""
    import tempfile

    from xscore.recipes.default_model.evaluate import TorchCrossEncoder
    from xscore.service.models.defaultmodel import materialize_default
    from xscore.service.models.ranking import OWN_RANKING_FILE

    artifact_dir = Path(artifact_dir)
    sets = ranking_sets(recipe, embed, data_dir, artifact_dir)
    with tempfile.TemporaryDirectory() as scratch:
        cross = TorchCrossEncoder(materialize_default(Path(scratch) / "model", artifact_dir=artifact_dir))
        path = write_ranking_set(sets, cross.logits, artifact_dir / OWN_RANKING_FILE)
    record_in_card(artifact_dir, path, {name: len(items) for name, items in sets.items()})
    return path


def record_in_card(artifact_dir: Path, path: Path, queries: Mapping[str, int]) -> None:
    import json

    from xscore.service.models.defaultmodel import CARD_FILE, sha256_file

    card_path = Path(artifact_dir) / CARD_FILE
    card = json.loads(card_path.read_text())
    card["ranking_set"] = {
        "file": path.name, "sha256": sha256_file(path),
        "source": "validation text (never trained on, never an evaluation query): Debian held-out packages and "
                  "WordNet one-sense words never sense-tagged, candidates mined as the evaluation sets' are",
        "queries": dict(queries), "candidates_per_query": CANDIDATES,
        "reference": "the PyTorch model's logits (fp32) for every pair",
        "use": "the export refuses a lossy variant whose mean NDCG@10 against the labels falls more than 0.5% "
               "below the reference's on either set"}
    card_path.write_text(json.dumps(card, indent=2) + "\n")
