"""Vocabulary trimming: keep only the embedding rows of the tokens a corpus uses.

Head and neuron pruning leave the word embeddings alone, and in a small encoder they are
half the model (MiniLM: 30522 x 384 of 22.7 M parameters). A model that will only ever
read one domain's text needs the rows of the tokens that text produces, plus the special
tokens (as TextPruner's vocabulary pruning does). :func:`plan_trim` tokenises the texts
and picks those ids; the export keeps them in their original order, so a token's new id
is its rank among the kept ones, and writes a tokenizer whose vocabulary is exactly the
kept tokens.

Why the trimmed tokenizer reads the corpus exactly as the original does: WordPiece is
greedy longest-match-first, so at every position the original picked the longest piece
in its vocabulary; that piece is kept, and no longer one can appear, since the kept
vocabulary is a subset of the original. The export still re-tokenises every text with
the written tokenizer and raises if one differs (possible in theory for a word the
original turned into ``[UNK]``). Text outside the corpus may tokenise differently (more
``[UNK]`` or shorter pieces): trim with every text the model will see.

Only fast WordPiece tokenizers (the BERT family) are supported: a BPE vocabulary cannot
lose tokens without breaking its merges.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class VocabularyTrim:
    """The token ids an export keeps.

    Attributes:
        kept: original ids in ascending order; the new id of ``kept[i]`` is ``i``.
        original_size: rows of the input embedding before trimming.
        tensors: state-dict names whose first dimension is the vocabulary.
        texts: how many texts were tokenised.
        texts_digest: sha256 (16 hex digits) of the texts, to tell which corpus it was.
    """

    kept: list[int]
    original_size: int
    tensors: list[str]
    texts: int
    texts_digest: str

    @property
    def new_id(self) -> dict[int, int]:
        return {old: new for new, old in enumerate(self.kept)}

    def manifest(self) -> dict[str, Any]:
        return {
            "original_size": self.original_size,
            "kept_count": len(self.kept),
            "kept_ids": self.kept,
            "kept_ids_sha256": _digest(",".join(map(str, self.kept))),
            "tensors": self.tensors,
            "texts": self.texts,
            "texts_sha256": self.texts_digest,
        }

    def apply(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``state`` with the vocabulary rows of :attr:`tensors` cut to :attr:`kept`;
        tensors that shared storage (tied embeddings) still share it afterwards."""
        index = torch.tensor(self.kept, dtype=torch.long)
        done: dict[int, torch.Tensor] = {}
        out = dict(state)
        for name in self.tensors:
            t = state[name]
            key = t.untyped_storage().data_ptr()
            if key not in done:
                done[key] = t.detach().index_select(0, index)
            out[name] = done[key]
        return out

    def update_config(self, config: Any) -> None:
        """Set ``vocab_size`` and move ``*_token_id`` fields to their new ids."""
        config.vocab_size = len(self.kept)
        new_id = self.new_id
        for key, value in config.to_dict().items():
            if key.endswith("_token_id") and isinstance(value, int) and value in new_id:
                setattr(config, key, new_id[value])


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _backend(tokenizer: Any) -> Any:
    """A copy of the fast tokenizer's backend without truncation or padding, so every
    token of a long text counts."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_truncation()
    backend.no_padding()
    return backend


def _check_tokenizer(tokenizer: Any) -> dict[str, Any]:
    """The tokenizer's JSON form; raises unless it is a fast WordPiece tokenizer."""
    if tokenizer is None:
        raise ValueError(
            "tokenizer: got None; vocabulary trimming tokenises the texts and writes a trimmed "
            "tokenizer, so it needs the model's tokenizer: pass tokenizer=<the fast Hugging Face "
            "tokenizer> (e.g. LoadedModel.tokenizer)"
        )
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError(
            f"tokenizer: {type(tokenizer).__name__} has no backend_tokenizer; vocabulary trimming "
            "needs a fast (tokenizers-backed) WordPiece tokenizer"
        )
    spec: dict[str, Any] = json.loads(backend.to_str())
    kind = spec.get("model", {}).get("type")
    if kind != "WordPiece":
        raise ValueError(
            f"tokenizer: model type {kind!r}; vocabulary trimming supports 'WordPiece' tokenizers "
            "(the BERT family) only: a BPE or Unigram vocabulary cannot drop tokens and still "
            "tokenise the same; export without vocabulary="
        )
    return spec


def _vocab_tensors(model: nn.Module) -> tuple[int, list[str]]:
    """The embedding's row count and the state-dict names of the input embedding, the
    output embedding and its bias, and every alias of them (tied weights)."""
    get_in = getattr(model, "get_input_embeddings", None)
    embedding = get_in() if callable(get_in) else None
    if not isinstance(embedding, nn.Embedding):
        raise ValueError(
            f"model: {type(model).__name__} has no word embeddings to trim "
            f"(get_input_embeddings() gave {type(embedding).__name__}); vocabulary trimming needs "
            "a transformers text model with an nn.Embedding input embedding: export without vocabulary="
        )
    rows = int(embedding.weight.shape[0])
    targets = [embedding.weight]
    get_out = getattr(model, "get_output_embeddings", None)
    head = get_out() if callable(get_out) else None
    if head is not None:
        targets += [p for p in (head.weight, getattr(head, "bias", None))
                    if isinstance(p, torch.Tensor) and p.shape[0] == rows]
    ptrs = {t.untyped_storage().data_ptr() for t in targets}
    return rows, [name for name, t in model.state_dict().items()
                  if t.numel() and t.shape[0] == rows and t.untyped_storage().data_ptr() in ptrs]


def plan_trim(model: nn.Module, tokenizer: Any, texts: Iterable[str]) -> VocabularyTrim:
    """The ids to keep: every token the texts tokenise to (special tokens included), the
    tokenizer's special and added tokens, and the config's ``*_token_id`` values.

    Raises:
        TypeError: ``texts`` is a single string rather than a list of them.
        ValueError: no texts; no tokenizer or not a fast WordPiece one; a model without
            word embeddings; a tokenizer larger than the embedding.
    """
    if isinstance(texts, (str, bytes)):
        raise TypeError("vocabulary: got one string; pass a list of texts (e.g. the task's data)")
    texts = list(texts)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError(
            f"vocabulary: got {len(texts)} items, not a non-empty list of strings; pass the texts "
            "the exported model will read"
        )
    spec = _check_tokenizer(tokenizer)
    rows, names = _vocab_tensors(model)
    size = len(spec["model"]["vocab"])
    if size > rows:
        raise ValueError(
            f"tokenizer: {size} tokens but the model's embedding has {rows} rows; pass the model's own tokenizer"
        )
    kept: set[int] = {int(a["id"]) for a in spec.get("added_tokens", [])}
    kept.update(int(i) for i in tokenizer.all_special_ids)
    config = getattr(model, "config", None)
    if config is not None:
        kept.update(v for k, v in config.to_dict().items()
                    if k.endswith("_token_id") and isinstance(v, int) and 0 <= v < rows)
    for enc in _backend(tokenizer).encode_batch(texts, add_special_tokens=True):
        kept.update(enc.ids)
    return VocabularyTrim(kept=sorted(kept), original_size=rows, tensors=names,
                          texts=len(texts), texts_digest=_digest("\0".join(texts)))


def _remap_ids(node: Any, new_id: Mapping[int, int]) -> Any:
    """Post-processor JSON with special token ids moved: TemplateProcessing's
    ``special_tokens[*].ids``, Bert/RobertaProcessing's ``[token, id]`` pairs."""
    if isinstance(node, list):
        if len(node) == 2 and isinstance(node[0], str) and isinstance(node[1], int):
            return [node[0], new_id[node[1]]]
        return [_remap_ids(x, new_id) for x in node]
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "ids" and isinstance(value, list):
                out[key] = [new_id[int(i)] for i in value]
            else:
                out[key] = _remap_ids(value, new_id)
        return out
    return node


def save_trimmed_tokenizer(tokenizer: Any, trim: VocabularyTrim, directory: Path) -> None:
    """Write ``tokenizer`` to ``directory`` with only the kept tokens, in their original
    order (``tokenizer.json`` and ``vocab.txt``)."""
    spec = _check_tokenizer(tokenizer)
    new_id = trim.new_id
    token_of = {int(i): tok for tok, i in spec["model"]["vocab"].items()}
    added = {int(a["id"]) for a in spec.get("added_tokens", [])}
    lost = [old for old in trim.kept if old not in token_of and old not in added]
    if lost:
        raise ValueError(f"tokenizer: kept ids {lost[:3]} have no token; pass the model's own tokenizer")
    # Added tokens outside the WordPiece vocabulary live only in added_tokens.
    spec["model"]["vocab"] = {token_of[old]: new for new, old in enumerate(trim.kept) if old in token_of}
    for added in spec.get("added_tokens", []):
        added["id"] = new_id[int(added["id"])]
    if spec.get("post_processor") is not None:
        spec["post_processor"] = _remap_ids(spec["post_processor"], new_id)
    if isinstance(spec.get("padding"), dict) and "pad_id" in spec["padding"]:
        spec["padding"]["pad_id"] = new_id.get(int(spec["padding"]["pad_id"]), 0)
    tokenizer.save_pretrained(str(directory))
    (directory / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False))
    vocab = sorted(spec["model"]["vocab"], key=spec["model"]["vocab"].__getitem__)
    (directory / "vocab.txt").write_text("".join(f"{tok}\n" for tok in vocab), encoding="utf-8")


def check_same_tokens(tokenizer: Any, directory: Path, trim: VocabularyTrim, texts: list[str]) -> None:
    """Raise unless the tokenizer saved in ``directory`` reads every text as ``tokenizer``
    does, with ids moved to the kept order."""
    from transformers import AutoTokenizer

    trimmed = AutoTokenizer.from_pretrained(str(directory), local_files_only=True, trust_remote_code=False)
    new_id = trim.new_id
    pairs = zip(_backend(tokenizer).encode_batch(texts), _backend(trimmed).encode_batch(texts), strict=True)
    for text, (old, new) in zip(texts, pairs, strict=True):
        if [new_id.get(i, -1) for i in old.ids] != new.ids:
            raise RuntimeError(
                f"the trimmed tokenizer reads {text[:60]!r} differently from the original; "
                "vocabulary trimming cannot keep this corpus exact: export without vocabulary="
            )
