"""Pair tokenization with Hugging Face `tokenizers`, and padding into engine batches.

Truncation is done here rather than by the tokenizer so that the service's truncation rule holds
for every model: the query keeps its tokens up to `query_cap`, the document is cut
(`only_second`); when the query alone is over the cap, both are cut (`longest_first`, the
`transformers` rule, so scores match a reference that tokenizes with `truncation=True`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Encoding, Tokenizer

from xscore.api.errors import ErrorCode, XscoreError, model_error
from xscore.api.schema import LengthPolicy
from xscore.service.models.prompts import PromptProfile, prompt_profile

log = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH = 512


@dataclass(frozen=True, slots=True)
class EncodedPair:
    ids: list[int]
    type_ids: list[int]
    truncated: bool

    @property
    def length(self) -> int:
        return len(self.ids)


@dataclass(frozen=True, slots=True)
class EncodedDocument:
    """One (query, document) pair as the engine scores it: one window, or several for a long
    document in chunk mode. `truncated`: some of the pair's tokens are in no window."""

    windows: list[EncodedPair]
    truncated: bool


@dataclass(frozen=True, slots=True)
class EncodedBatch:
    """Right-padded int64 arrays of shape (pairs, longest)."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray

    @property
    def pairs(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def padded_tokens(self) -> int:
        return int(self.input_ids.size)

    @property
    def real_tokens(self) -> int:
        return int(self.attention_mask.sum())


def split_lengths(query: int, document: int, budget: int, query_cap: int) -> tuple[int, int]:
    """Token counts kept for (query, document) so that they fit `budget` content tokens."""
    if query + document <= budget:
        return query, document
    if query <= min(query_cap, budget):
        return query, budget - query
    # longest_first as the Rust tokenizers (and so every fast HF tokenizer) compute it: the
    # longer side shrinks to what the shorter leaves; when both are over half, the shorter keeps
    # budget // 2 and the longer the rest (the document, at equal length).
    shorter = min(query, document)
    if shorter * 2 > budget:
        half = budget // 2
        return (budget - half, half) if query > document else (half, budget - half)
    if query > document:
        return budget - document, document
    return query, budget - query


def window_spans(length: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """[start, stop) windows of at most `size` tokens over `length` tokens: each starts
    `size - overlap` after the one before (so neighbours share `overlap` tokens) and the last ends
    at `length`."""
    if size < 1 or not 0 <= overlap < size:
        raise ValueError(f"a window of {size} tokens cannot overlap its neighbour by {overlap}")
    spans = [(0, min(size, length))]
    while spans[-1][1] < length:
        start = spans[-1][0] + size - overlap
        spans.append((start, min(start + size, length)))
    return spans


class _PromptRuns:
    """A prompted pair's tokens in five runs: before the query, the query, between, the document,
    after. A token belongs to a field when its characters overlap the field's."""

    def __init__(self) -> None:
        self.head: list[int] = []
        self.query: list[int] = []
        self.middle: list[int] = []
        self.document: list[int] = []
        self.tail: list[int] = []
        self._literal = self.head

    def add(self, encoding: Encoding, query: tuple[int, int] | None, document: tuple[int, int] | None) -> None:
        for token, (start, end) in zip(encoding.ids, encoding.offsets):
            if query is not None and end > query[0] and start < query[1]:
                self.query.append(token)
                self._literal = self.middle
            elif document is not None and end > document[0] and start < document[1]:
                self.document.append(token)
                self._literal = self.tail
            else:
                self._literal.append(token)


class PairTokenizer:
    """Encodes (query, document) pairs exactly as the model's own tokenizer would."""

    def __init__(self, tokenizer: Tokenizer, max_length: int, query_cap: int | None = None,
                 pad_id: int | None = None, prompt: PromptProfile | None = None) -> None:
        declared = tokenizer.padding
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self._tokenizer = tokenizer
        self.max_length = max_length
        self.prompt = prompt
        self._prefix: list[int] = []
        self._suffix: list[int] = []
        if prompt is not None:
            # a causal-LM reranker: prefix + body(instruction, query, document) + suffix, as one sequence
            self._prefix = tokenizer.encode(prompt.prefix, add_special_tokens=False).ids
            self._suffix = tokenizer.encode(prompt.suffix, add_special_tokens=False).ids
            self.special_tokens = len(self._prefix) + len(self._suffix)
        else:
            self.special_tokens = tokenizer.num_special_tokens_to_add(is_pair=True)
        budget = max_length - self.special_tokens
        if budget < 2:
            raise model_error(f"max_length {max_length} leaves no room for a query and a document")
        self.content_budget = budget
        self.query_cap = query_cap if query_cap is not None else budget // 2
        if pad_id is None and declared and isinstance(declared.get("pad_id"), int):
            pad_id = declared["pad_id"]
        if pad_id is None:
            # Masked padding is invisible to an encoder whatever its id; where a model reads the
            # ids (positions, last-token pooling) the export's gate compares every probe pair in
            # a mixed-length batch with the pair alone, and refuses a model that depends on it.
            log.warning("the model declares no pad token (config pad_token_id, tokenizer pad_token); "
                        "padding with id 0")
            pad_id = 0
        self.pad_id = pad_id

    @classmethod
    def from_dir(cls, model_dir: Path, max_length: int | None = None) -> PairTokenizer:
        path = model_dir / "tokenizer.json"
        if not path.is_file():
            raise model_error(
                f"{model_dir} has no tokenizer.json (a fast tokenizer is required); "
                "export the model with `xscore export` first"
            )
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # the Rust error says which part of the file is bad
            raise model_error(f"cannot read {path}: {exc}") from exc
        config = _read_json(model_dir / "config.json")
        tokenizer_config = _read_json(model_dir / "tokenizer_config.json")
        limit = model_max_length(config, tokenizer_config)
        chosen = min(max_length, limit) if max_length else min(limit, default_max_length(config))
        pad_id = declared_pad_id(model_dir, config, tokenizer_config, tokenizer)
        return cls(tokenizer, chosen, pad_id=pad_id, prompt=prompt_profile(model_dir, config))

    def encode(
        self, queries: Sequence[str], documents: Sequence[str], *, truncate: bool = True,
        instruction: str | None = None,
    ) -> list[EncodedPair]:
        """Encode pairs (queries[i], documents[i]); raise on an over-long pair if not truncating.
        `instruction` goes into a causal-LM reranker's prompt (its profile's default when None)."""
        return [document.windows[0] for document in
                self.encode_documents(queries, documents, truncate=truncate, instruction=instruction)]

    def encode_documents(
        self, queries: Sequence[str], documents: Sequence[str], *, truncate: bool = True,
        instruction: str | None = None, lengths: LengthPolicy = LengthPolicy(),
    ) -> list[EncodedDocument]:
        """Encode pairs under a resolved length policy: token caps first, then the model's limit,
        which cuts the document (`truncate`) or, in chunk mode, splits it into windows."""
        if len(queries) != len(documents):
            raise ValueError("queries and documents must have the same length")
        if self.prompt is not None:
            return self._encode_prompted(queries, documents, truncate, instruction, lengths)
        unique_queries = list(dict.fromkeys(queries))
        query_encodings = dict(
            zip(unique_queries, self._tokenizer.encode_batch(unique_queries, add_special_tokens=False))
        )
        doc_encodings = self._tokenizer.encode_batch(list(documents), add_special_tokens=False)
        return [
            self._fit(index, query_encodings[query], document, truncate, lengths)
            for index, (query, document) in enumerate(zip(queries, doc_encodings))
        ]

    def _fit(self, index: int, query: Encoding, document: Encoding, truncate: bool,
             lengths: LengthPolicy) -> EncodedDocument:
        capped = False
        if lengths.max_tokens_per_query is not None and len(query.ids) > lengths.max_tokens_per_query:
            query, capped = _slice(query, 0, lengths.max_tokens_per_query), True
        if lengths.max_tokens_per_doc is not None and len(document.ids) > lengths.max_tokens_per_doc:
            document, capped = _slice(document, 0, lengths.max_tokens_per_doc), True
        if lengths.long_documents == "chunk" and len(query.ids) + len(document.ids) > self.content_budget:
            return self._chunk(index, query, document, truncate, lengths, capped)
        pair = self._assemble(index, query, document, truncate)
        return EncodedDocument([pair], pair.truncated or capped)

    def _chunk(self, index: int, query: Encoding, document: Encoding, truncate: bool, lengths: LengthPolicy,
               capped: bool) -> EncodedDocument:
        """Windows of the document, each after the query (cut to its share, as a truncated pair's)."""
        query_len = len(query.ids)
        keep_query = min(query_len, self.query_cap)
        if keep_query < query_len and not truncate:
            raise _over_length(index, query_len + len(document.ids) + self.special_tokens,
                               f"query {query_len} over its share {self.query_cap}, document "
                               f"{len(document.ids)}, special {self.special_tokens}", self.max_length)
        query = _slice(query, 0, keep_query)
        room = self.content_budget - keep_query
        spans = self._spans(index, len(document.ids), room, lengths, truncate,
                            f"the query's {keep_query} and {self.special_tokens} special tokens")
        windows = []
        for start, stop in spans:
            merged = self._tokenizer.post_process(query, _slice(document, start, stop), add_special_tokens=True)
            windows.append(EncodedPair(merged.ids, merged.type_ids, False))
        return EncodedDocument(windows, capped or keep_query < query_len or spans[-1][1] < len(document.ids))

    def _spans(self, index: int, length: int, room: int, lengths: LengthPolicy, truncate: bool,
               others: str) -> list[tuple[int, int]]:
        overlap = lengths.chunk_overlap or 0
        if overlap >= room:
            raise XscoreError(
                ErrorCode.UNPROCESSABLE,
                f"chunk_overlap {overlap} is not below the {room} document tokens a window of pair {index} holds "
                f"(max_length {self.max_length} less {others})",
                details={"field": "chunk_overlap", "index": index, "window_tokens": room})
        spans = window_spans(length, room, overlap)
        most = lengths.max_chunks_per_doc
        if most is not None and len(spans) > most:
            if not truncate:
                raise XscoreError(
                    ErrorCode.UNPROCESSABLE,
                    f"pair {index} needs {len(spans)} windows of {room} document tokens, over max_chunks_per_doc "
                    f"{most}; raise it or allow truncation",
                    details={"field": "max_chunks_per_doc", "index": index, "windows": len(spans), "limit": most})
            spans = spans[:most]
        return spans

    def _encode_prompted(self, queries: Sequence[str], documents: Sequence[str], truncate: bool,
                         instruction: str | None, lengths: LengthPolicy) -> list[EncodedDocument]:
        """Each pair's body parts tokenized one by one (as the reranker's own recipe does), split
        by character offsets into the runs around the query and the document, then fitted."""
        assert self.prompt is not None
        rendered = [self.prompt.spans(query, document, instruction) for query, document in zip(queries, documents)]
        encodings = iter(self._tokenizer.encode_batch([text for parts in rendered for text, _, _ in parts],
                                                      add_special_tokens=False))
        fitted = []
        for index, parts in enumerate(rendered):
            runs = _PromptRuns()
            for (_, query_span, document_span), encoding in zip(parts, encodings):
                runs.add(encoding, query_span, document_span)
            fitted.append(self._fit_prompted(index, runs, truncate, lengths))
        return fitted

    def _fit_prompted(self, index: int, runs: _PromptRuns, truncate: bool, lengths: LengthPolicy) -> EncodedDocument:
        """Caps first; over the max length the document loses its end (or, in chunk mode, is
        windowed) and the query keeps what the document leaves, at least its share of the room."""
        assert self.prompt is not None
        query, document = runs.query, runs.document
        capped = False
        if lengths.max_tokens_per_query is not None and len(query) > lengths.max_tokens_per_query:
            query, capped = query[: lengths.max_tokens_per_query], True
        if lengths.max_tokens_per_doc is not None and len(document) > lengths.max_tokens_per_doc:
            document, capped = document[: lengths.max_tokens_per_doc], True
        fixed = len(runs.head) + len(runs.middle) + len(runs.tail)
        room = self.content_budget - fixed  # for the query and the document together
        if len(query) + len(document) <= room:
            return EncodedDocument([self._prompt_pair(runs, query, document)], capped)
        chunk = lengths.long_documents == "chunk"
        share = max(1, int(room * self.prompt.query_share))
        keep_query = min(len(query), max(share, room - len(document)))
        if room < 2 or (not truncate and (keep_query < len(query) or not chunk)):
            raise _over_length(index, fixed + len(query) + len(document) + self.special_tokens,
                               f"prompt {fixed + self.special_tokens}, query {len(query)}, document {len(document)}",
                               self.max_length)
        cut_query = keep_query < len(query)
        query = query[:keep_query]
        if not chunk:
            return EncodedDocument([self._prompt_pair(runs, query, document[: room - keep_query])], True)
        spans = self._spans(index, len(document), room - keep_query, lengths, truncate,
                            f"the prompt's {fixed + self.special_tokens} and the query's {keep_query} tokens")
        windows = [self._prompt_pair(runs, query, document[start:stop]) for start, stop in spans]
        return EncodedDocument(windows, capped or cut_query or spans[-1][1] < len(document))

    def _prompt_pair(self, runs: _PromptRuns, query: list[int], document: list[int]) -> EncodedPair:
        ids = self._prefix + runs.head + query + runs.middle + document + runs.tail + self._suffix
        return EncodedPair(ids, [0] * len(ids), False)

    def _assemble(self, index: int, query: Encoding, document: Encoding, truncate: bool) -> EncodedPair:
        query_len, doc_len = len(query.ids), len(document.ids)
        keep_query, keep_doc = split_lengths(query_len, doc_len, self.content_budget, self.query_cap)
        truncated = (keep_query, keep_doc) != (query_len, doc_len)
        if truncated:
            if not truncate:
                raise _over_length(index, query_len + doc_len + self.special_tokens,
                                   f"query {query_len}, document {doc_len}, special {self.special_tokens}",
                                   self.max_length)
            query = _slice(query, 0, keep_query)
            document = _slice(document, 0, keep_doc)
        merged = self._tokenizer.post_process(query, document, add_special_tokens=True)
        return EncodedPair(merged.ids, merged.type_ids, truncated)


def _over_length(index: int, total: int, parts: str, max_length: int) -> XscoreError:
    return XscoreError(
        ErrorCode.UNPROCESSABLE,
        f"pair {index} is {total} tokens ({parts}), over the model's max_length {max_length}; "
        "shorten it or allow truncation",
        details={"index": index, "tokens": total, "max_length": max_length},
    )


def _slice(encoding: Encoding, start: int, stop: int) -> Encoding:
    """Tokens [start, stop) as a new Encoding: the encodings of a request's query are shared by its
    pairs, and `Encoding.truncate` works in place."""
    if start == 0 and stop >= len(encoding.ids):
        return encoding
    piece = Encoding.merge([encoding], growing_offsets=False)
    piece.truncate(stop)
    if start:
        piece.truncate(stop - start, direction="left")
    return piece


def pad_batch(pairs: Sequence[EncodedPair], pad_id: int) -> EncodedBatch:
    longest = max(pair.length for pair in pairs)
    input_ids = np.full((len(pairs), longest), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(pairs), longest), dtype=np.int64)
    token_type_ids = np.zeros((len(pairs), longest), dtype=np.int64)
    for row, pair in enumerate(pairs):
        input_ids[row, : pair.length] = pair.ids
        attention_mask[row, : pair.length] = 1
        token_type_ids[row, : pair.length] = pair.type_ids
    return EncodedBatch(input_ids, attention_mask, token_type_ids)


def model_max_length(config: dict, tokenizer_config: dict) -> int:
    """The longest pair the model takes: tokenizer limit capped by its position embeddings."""
    limits: list[int] = []
    declared = tokenizer_config.get("model_max_length")
    if isinstance(declared, int) and 0 < declared < 1_000_000:
        limits.append(declared)
    positions = config.get("max_position_embeddings")
    if isinstance(positions, int) and positions > 0:
        # RoBERTa-family models reserve padding_idx + 1 positions.
        offset = config.get("pad_token_id", 0) + 1 if config.get("model_type") in _OFFSET_MODELS else 0
        limits.append(positions - offset)
    return min(limits) if limits else DEFAULT_MAX_LENGTH


_OFFSET_MODELS = {"roberta", "xlm-roberta", "camembert", "xlm-roberta-xl"}

# Without --max-length, long-context models are served at most this long: attention memory grows
# with the square of a pair's length, and a 32k-token decoder pair alone can fill a machine.
ENCODER_DEFAULT_MAX_LENGTH = 8192
DECODER_DEFAULT_MAX_LENGTH = 4096
_DECODER_MODELS = {"qwen2", "qwen3", "llama", "mistral", "gemma", "gemma2", "gemma3", "phi3", "gpt2"}


def default_max_length(config: dict) -> int:
    """The serving default for a model's type (a decoder or an encoder); --max-length overrides it."""
    model_type = config.get("model_type")
    return DECODER_DEFAULT_MAX_LENGTH if model_type in _DECODER_MODELS else ENCODER_DEFAULT_MAX_LENGTH


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError) as exc:
        raise model_error(f"cannot read {path}: {exc}") from exc


def declared_pad_id(model_dir: Path, config: dict, tokenizer_config: dict, tokenizer: Tokenizer) -> int | None:
    """The pad id the model was built with, never guessed: `pad_token_id` in config.json (the
    exported graph uses it: RoBERTa's positions and decoder classifiers' last-token pooling read
    it from the ids), else the pad token the tokenizer's config declares. None when neither does."""
    declared = config.get("pad_token_id")
    if isinstance(declared, int) and not isinstance(declared, bool) and declared >= 0:
        return declared
    found = _pad_token_id(tokenizer_config, tokenizer)
    if found is None:
        found = _pad_token_id(_read_json(model_dir / "special_tokens_map.json"), tokenizer)
    return found


def _pad_token_id(declaring: dict, tokenizer: Tokenizer) -> int | None:
    """The id of the `pad_token` a tokenizer config file names, if the tokenizer has it."""
    token = declaring.get("pad_token")
    if isinstance(token, dict):
        token = token.get("content")
    return tokenizer.token_to_id(token) if isinstance(token, str) else None
