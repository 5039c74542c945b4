"""Small random-weight cross-encoders of each architecture family, built offline.

Each family gets a 2-layer body of hidden size 64 from its transformers config and a tokenizer
trained by the `tokenizers` library on the standard library's docstrings in that family's
conventions (WordPiece with [CLS]/[SEP] and token types, byte-level BPE with <s></s></s>,
SentencePiece-style Unigram, a decoder BPE with no specials around a pair). The pad token is
where the family puts it (not always id 0). Random bodies score every pair alike unless the
weights are spread: the init range is 0.1 and the head is rescaled to a logit spread of about
2.5, so a wrong score shows. The test suite serves every family and compares it with
transformers; needs torch (the export extra).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

from xscore.service.models.calibration import calibration_pairs
from xscore.service.models.corpus import docstrings

HIDDEN = 64
VOCAB = 1200
LOGIT_SPREAD = 2.5


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    build: Callable[[Path], Path]
    real_models: tuple[str, ...]  # hub ids of the real models of this family


def _texts() -> list[str]:
    return [text for _, text in docstrings()]


def _fast(tokenizer, model_max_length: int, input_names: tuple[str, ...], **special: str):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_max_length=model_max_length,
                                   model_input_names=list(input_names), **special)


def wordpiece_tokenizer(max_length: int = 512, *, token_types: bool = True):
    """BERT's conventions: lower-cased WordPiece, [CLS] A [SEP] B [SEP], types 0 then 1, [PAD] = 0."""

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.train_from_iterator(_texts(), trainers.WordPieceTrainer(
        vocab_size=VOCAB, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    names = ("input_ids", "token_type_ids", "attention_mask") if token_types else ("input_ids", "attention_mask")
    return _fast(tokenizer, max_length, names, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                 sep_token="[SEP]", mask_token="[MASK]")


def byte_bpe_tokenizer(max_length: int = 512):
    """RoBERTa's conventions: byte-level BPE, <s> A </s></s> B </s>, <pad> = 1."""

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(_texts(), trainers.BpeTrainer(
        vocab_size=VOCAB, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer.post_processor = processors.RobertaProcessing(
        ("</s>", tokenizer.token_to_id("</s>")), ("<s>", tokenizer.token_to_id("<s>")), add_prefix_space=False)
    return _fast(tokenizer, max_length, ("input_ids", "attention_mask"), bos_token="<s>", eos_token="</s>",
                 unk_token="<unk>", pad_token="<pad>", cls_token="<s>", sep_token="</s>", mask_token="<mask>")


def unigram_tokenizer(specials: tuple[str, ...], single: str, pair: str, max_length: int,
                      input_names: tuple[str, ...], **special: str):
    """SentencePiece's conventions (XLM-RoBERTa, DeBERTa-v3): Unigram over Metaspace pieces."""

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.train_from_iterator(_texts(), trainers.UnigramTrainer(
        vocab_size=VOCAB, special_tokens=list(specials), unk_token=special["unk_token"]))
    used = {token for token in specials if token in single or token in pair}
    tokenizer.post_processor = processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=[(token, tokenizer.token_to_id(token)) for token in used])
    return _fast(tokenizer, max_length, input_names, **special)


def decoder_bpe_tokenizer(max_length: int = 512):
    """Qwen's conventions: byte-level BPE, no specials around a pair, <|endoftext|> pads (id 2)."""

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(_texts(), trainers.BpeTrainer(
        vocab_size=VOCAB, special_tokens=["<|im_start|>", "<|im_end|>", "<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return _fast(tokenizer, max_length, ("input_ids", "attention_mask"), pad_token="<|endoftext|>",
                 eos_token="<|im_end|>")


def _scoring_head(model):
    """The Linear that produces the logits: the last one with num_labels outputs."""
    import torch

    return [module for module in model.modules()
            if isinstance(module, torch.nn.Linear) and module.out_features == model.config.num_labels][-1]


def _save(model, tokenizer, destination: Path) -> Path:
    """Rescale the head so logits over real pairs spread by about LOGIT_SPREAD, then save."""
    import torch

    head = _scoring_head(model)
    pairs = calibration_pairs(24, seed=7)
    encoded = tokenizer([q for q, _ in pairs], [d for _, d in pairs], padding=True, truncation=True,
                        max_length=128, return_tensors="pt")
    with torch.inference_mode():
        spread = float(model(**encoded).logits[:, 0].std())
        head.weight.mul_(LOGIT_SPREAD / max(spread, 1e-6))
        if head.bias is not None:  # centred, so sigmoid scores spread too instead of saturating
            head.bias.sub_(float(model(**encoded).logits[:, 0].mean()))
    destination.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(destination)
    tokenizer.save_pretrained(destination)
    return destination


def _build(config_class: str, tokenizer, seed: int = 0, **config: object) -> Callable[[Path], Path]:
    def build(destination: Path) -> Path:
        import torch
        import transformers
        from transformers import AutoModelForSequenceClassification

        torch.manual_seed(seed)
        settings = {"vocab_size": len(tokenizer), "hidden_size": HIDDEN, "num_hidden_layers": 2,
                    "num_attention_heads": 2, "intermediate_size": 2 * HIDDEN, "initializer_range": 0.1,
                    "num_labels": 1, "pad_token_id": tokenizer.pad_token_id, **config}
        model_config = getattr(transformers, config_class)(**settings)
        model = AutoModelForSequenceClassification.from_config(model_config).eval()
        return _save(model, tokenizer, destination)

    return build


def families() -> list[Family]:
    """Every family the suite serves (tokenizers are trained here, in a few seconds)."""
    wordpiece = wordpiece_tokenizer()
    xlmr_specials = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
    xlmr_special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
                    "cls_token": "<s>", "sep_token": "</s>", "mask_token": "<mask>"}
    xlmr = unigram_tokenizer(xlmr_specials, "<s> $A </s>", "<s> $A </s> </s> $B </s>", 8192,
                             ("input_ids", "attention_mask"), **xlmr_special)
    deberta = unigram_tokenizer(("[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"), "[CLS] $A [SEP]",
                                "[CLS] $A [SEP] $B:1 [SEP]:1", 512, ("input_ids", "token_type_ids", "attention_mask"),
                                unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
                                mask_token="[MASK]")
    modern = wordpiece_tokenizer(8192, token_types=False)
    roberta = byte_bpe_tokenizer()
    decoder = decoder_bpe_tokenizer()
    return [
        Family("bert", _build("BertConfig", wordpiece), ("cross-encoder/ms-marco-MiniLM-L6-v2", "BAAI/bge-reranker-base")),
        Family("electra", _build("ElectraConfig", wordpiece, embedding_size=HIDDEN),
               ("cross-encoder/ms-marco-electra-base",)),
        Family("distilbert", _build("DistilBertConfig", wordpiece_tokenizer(token_types=False), dim=HIDDEN,
                                    n_layers=2, n_heads=2, hidden_dim=2 * HIDDEN),
               ("distilbert-based cross-encoders",)),
        Family("roberta", _build("RobertaConfig", roberta, max_position_embeddings=514),
               ("cross-encoder/stsb-roberta-base",)),
        Family("xlm-roberta", _build("XLMRobertaConfig", xlmr, max_position_embeddings=8194),
               ("BAAI/bge-reranker-v2-m3", "BAAI/bge-reranker-large", "jinaai/jina-reranker-v2-base-multilingual")),
        Family("deberta-v3", _build("DebertaV2Config", deberta, max_position_embeddings=512, type_vocab_size=0,
                                    relative_attention=True, position_buckets=256, pos_att_type=["p2c", "c2p"],
                                    position_biased_input=False, share_att_key=True, norm_rel_ebd="layer_norm",
                                    max_relative_positions=-1),
               ("mixedbread-ai/mxbai-rerank-base-v1", "mixedbread-ai/mxbai-rerank-large-v1")),
        Family("modernbert", _build("ModernBertConfig", modern, cls_token_id=modern.cls_token_id,
                                    sep_token_id=modern.sep_token_id, bos_token_id=modern.cls_token_id,
                                    eos_token_id=modern.sep_token_id, global_attn_every_n_layers=2,
                                    local_attention=16, max_position_embeddings=8192),
               ("Alibaba-NLP/gte-reranker-modernbert-base",)),
        Family("qwen3-seq-cls", _build("Qwen3Config", decoder, num_key_value_heads=1, head_dim=32,
                                       max_position_embeddings=4096, tie_word_embeddings=False),
               ("tomaarsen/Qwen3-Reranker-0.6B-seq-cls",)),
    ]


FAMILY_NAMES = ("bert", "electra", "distilbert", "roberta", "xlm-roberta", "deberta-v3", "modernbert", "qwen3-seq-cls")


def gemma_tokenizer(max_length: int = 8192):
    """Gemma's conventions: SentencePiece-style BPE over "▁"-joined words, <pad> 0, <eos> 1, <bos> 2."""

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Replace(" ", "\u2581")
    tokenizer.pre_tokenizer = pre_tokenizers.Split("\u2581", "merged_with_next")
    tokenizer.decoder = decoders.Replace("\u2581", " ")
    tokenizer.train_from_iterator(_texts(), trainers.BpeTrainer(
        vocab_size=VOCAB, special_tokens=["<pad>", "<eos>", "<bos>", "<unk>"]))
    return _fast(tokenizer, max_length, ("input_ids", "attention_mask"), bos_token="<bos>", eos_token="<eos>",
                 pad_token="<pad>", unk_token="<unk>")


def _spread_answers(model, tokenizer, profile) -> None:
    """Rescale the answer rows so the score over real prompts spreads by about LOGIT_SPREAD."""
    import torch

    yes = tokenizer.convert_tokens_to_ids(profile.yes_token)
    no = tokenizer.convert_tokens_to_ids(profile.no_token) if profile.no_token else None
    prefix = tokenizer.encode(profile.prefix, add_special_tokens=False)
    suffix = tokenizer.encode(profile.suffix, add_special_tokens=False)
    rows = model.lm_head.weight
    with torch.inference_mode():
        scores = []
        for query, document in calibration_pairs(16, seed=7):
            body = [token for part in profile.render(query, document) for token in
                    tokenizer.encode(part, add_special_tokens=False)]
            last = model(input_ids=torch.tensor([(prefix + body + suffix)[:256]])).logits[0, -1]
            scores.append(last[yes] - (last[no] if no is not None else 0.0))
        spread = float(torch.stack(scores).std())
        base = rows[no] if no is not None else torch.zeros_like(rows[yes])
        rows[yes] = base + (rows[yes] - base) * (LOGIT_SPREAD / max(spread, 1e-6))


def causal_reranker(profile_name: str = "qwen3-reranker") -> Family:
    """A causal-LM reranker of one profile's shape (Qwen3-Reranker, mxbai-rerank-v2, bge-reranker-v2-gemma),
    scored at the last position of its prompt; its answer rows are spread like the heads above.
    Build it into a folder named after the profile: mxbai's and BAAI's profiles also match on the
    model's name, since their architectures are those of plain chat models."""
    from xscore.service.models.prompts import BGE_RERANKER_V2_GEMMA, MXBAI_RERANK_V2, QWEN3_RERANKER

    profile = {profile.name: profile for profile in (QWEN3_RERANKER, MXBAI_RERANK_V2, BGE_RERANKER_V2_GEMMA)}[
        profile_name]
    if profile is BGE_RERANKER_V2_GEMMA:
        tokenizer = gemma_tokenizer()
        tokenizer.add_tokens(["Yes"])
        config_class, extra = "GemmaConfig", {"head_dim": 32, "max_position_embeddings": 8192,
                                              "bos_token_id": 2, "eos_token_id": 1}
        real = ("BAAI/bge-reranker-v2-gemma",)
    else:
        tokenizer = decoder_bpe_tokenizer(4096)
        if profile is QWEN3_RERANKER:
            tokenizer.add_tokens(["yes", "no", "<think>", "</think>"])
            config_class, extra = "Qwen3Config", {"head_dim": 32, "max_position_embeddings": 4096}
            real = ("Qwen/Qwen3-Reranker-0.6B", "Qwen/Qwen3-Reranker-4B", "Qwen/Qwen3-Reranker-8B")
        else:  # "0" and "1" are byte-level tokens already
            config_class, extra = "Qwen2Config", {"max_position_embeddings": 4096}
            real = ("mixedbread-ai/mxbai-rerank-base-v2", "mixedbread-ai/mxbai-rerank-large-v2")

    def build(destination: Path) -> Path:
        import torch
        import transformers

        torch.manual_seed(0)
        config = getattr(transformers, config_class)(
            vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=1, initializer_range=0.1, tie_word_embeddings=False,
            pad_token_id=tokenizer.pad_token_id, **extra)
        model = transformers.AutoModelForCausalLM.from_config(config).eval()
        _spread_answers(model, tokenizer, profile)
        destination.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(destination)
        tokenizer.save_pretrained(destination)
        return destination

    return Family(profile.name, build, real)
