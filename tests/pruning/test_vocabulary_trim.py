"""Vocabulary trimming on export: the trimmed model read through the trimmed tokenizer
computes on the corpus what the untrimmed pruned model computes through the original one,
with fewer embedding rows; bad inputs are refused before anything is written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from pruning.tiny import small_cnn
from torch import nn

from prunetune.api import export, load_pruned, prune


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    from prunetune.evaluators.data import pydoc_chunks

    return pydoc_chunks()[:300]


def _minilm() -> tuple[nn.Module, Any]:
    from prunetune.engine.sources import load_model
    from prunetune.spec import ModelSpec

    loaded = load_model(ModelSpec(source="minilm"))
    return loaded.model, loaded.tokenizer


def _hidden(model: nn.Module, tokenizer: Any, texts: list[str]) -> torch.Tensor:
    enc = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        return model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state


def _sample(corpus: list[str]) -> list[str]:
    """Short and long texts, some past the 128-token truncation."""
    by_length = sorted(corpus, key=len)
    return by_length[:8] + by_length[-8:] + corpus[100:116]


def test_structured_trimmed_export_reads_the_corpus_like_the_pruned_model(tmp_path: Path, corpus: list[str]) -> None:
    from transformers import AutoTokenizer

    model, tokenizer = _minilm()
    prune(model, 0.3, criterion="magnitude", granularity="heads+neurons")
    export(model, tmp_path, tokenizer=tokenizer, vocabulary=corpus)
    loaded = load_pruned(tmp_path)
    trimmed = AutoTokenizer.from_pretrained(str(tmp_path), local_files_only=True)
    meta = json.loads((tmp_path / "prunetune.json").read_text())["vocabulary"]

    kept = meta["kept_ids"]
    assert meta["kept_count"] == len(kept) == len(trimmed) == loaded.config.vocab_size
    assert meta["original_size"] == 30522 and len(kept) < 5000
    assert loaded.get_input_embeddings().weight.shape == (len(kept), 384)
    assert set(tokenizer.all_special_ids) <= set(kept)
    # Original order: new id i is the original token kept[i].
    assert trimmed.convert_ids_to_tokens(list(range(len(kept)))) == tokenizer.convert_ids_to_tokens(kept)
    assert torch.equal(loaded.get_input_embeddings().weight, model.get_input_embeddings().weight[kept])

    texts = _sample(corpus)
    expected, got = _hidden(model, tokenizer, texts), _hidden(loaded, trimmed, texts)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() <= 1e-5


def test_unstructured_trimmed_export_loads_with_plain_from_pretrained(tmp_path: Path, corpus: list[str]) -> None:
    from transformers import AutoModel, AutoTokenizer

    model, tokenizer = _minilm()
    prune(model, 0.5, criterion="magnitude")
    export(model, tmp_path, tokenizer=tokenizer, vocabulary=corpus)
    plain = AutoModel.from_pretrained(str(tmp_path), local_files_only=True).eval()
    trimmed = AutoTokenizer.from_pretrained(str(tmp_path), local_files_only=True)
    assert plain.config.vocab_size == len(trimmed) < 5000
    texts = _sample(corpus)
    expected = _hidden(model, tokenizer, texts)
    assert (_hidden(plain, trimmed, texts) - expected).abs().max() <= 1e-5
    assert (_hidden(load_pruned(tmp_path), trimmed, texts) - expected).abs().max() <= 1e-5


def _tiny_wordpiece() -> Any:
    """A BERT-style WordPiece tokenizer over 96 tokens, with an unused token between the
    special ones so that special ids move when trimmed."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import PreTrainedTokenizerFast

    words = ["the", "cat", "dog", "sat", "on", "mat", "a", "big", "red", "run", "##s", "##ing", "##ed"]
    letters = [c for c in "abcdefghijklmnopqrstuvwxyz"] + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
    tokens = list(dict.fromkeys(["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", *words, *letters]))
    tokens += [f"[unused{i}]" for i in range(1, 96 - len(tokens) + 1)]
    backend = Tokenizer(WordPiece({t: i for i, t in enumerate(tokens)}, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 3), ("[SEP]", 4)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


@pytest.mark.parametrize("granularity", ["heads+neurons", "unstructured"])
def test_a_tied_masked_lm_head_is_trimmed_with_the_embeddings(tmp_path: Path, granularity: str) -> None:
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=96, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                       intermediate_size=64, max_position_embeddings=64)).eval()
    tokenizer = _tiny_wordpiece()
    corpus = ["The cat sat on the mat.", "A big red dog runs, running", "the dogs ran"]
    prune(model, 0.5, criterion="magnitude", granularity=granularity)
    export(model, tmp_path, tokenizer=tokenizer, vocabulary=corpus)
    loaded = load_pruned(tmp_path)
    trimmed = AutoTokenizer.from_pretrained(str(tmp_path), local_files_only=True)
    kept = json.loads((tmp_path / "prunetune.json").read_text())["vocabulary"]["kept_ids"]
    assert trimmed.cls_token_id == kept.index(3) and trimmed.sep_token_id == kept.index(4)
    assert loaded.get_output_embeddings().weight.data_ptr() == loaded.get_input_embeddings().weight.data_ptr()
    a = tokenizer(corpus, padding=True, return_tensors="pt")
    b = trimmed(corpus, padding=True, return_tensors="pt")
    assert b["input_ids"].tolist() == [[kept.index(int(i)) for i in row] for row in a["input_ids"]]
    with torch.no_grad():
        expected = model(input_ids=a["input_ids"], attention_mask=a["attention_mask"]).logits[..., kept]
        got = loaded(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    assert (got - expected).abs().max() <= 1e-5


def test_bad_inputs_are_refused_before_anything_is_written(tmp_path: Path, corpus: list[str]) -> None:
    from tokenizers import Tokenizer
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast

    model, tokenizer = _minilm()
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"tokenizer: got None.*pass tokenizer="):
        export(model, out, vocabulary=corpus)
    with pytest.raises(TypeError, match="vocabulary: got one string"):
        export(model, out, tokenizer=tokenizer, vocabulary="the whole corpus in one string")
    with pytest.raises(ValueError, match="vocabulary: got 0 items"):
        export(model, out, tokenizer=tokenizer, vocabulary=[])
    bpe = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(BPE({"a": 0, "b": 1, "ab": 2}, [("a", "b")])))
    with pytest.raises(ValueError, match=r"model type 'BPE'.*'WordPiece'"):
        export(model, out, tokenizer=bpe, vocabulary=corpus)
    with pytest.raises(ValueError, match="model: SmallCNN has no word embeddings"):
        export(small_cnn(), out, tokenizer=tokenizer, vocabulary=corpus)
    assert not out.exists()


def test_a_tokenizer_without_vocabulary_is_saved_as_is(tmp_path: Path) -> None:
    from transformers import AutoTokenizer, BertConfig, BertModel

    model = BertModel(BertConfig(vocab_size=96, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                 intermediate_size=64, max_position_embeddings=64)).eval()
    export(model, tmp_path, tokenizer=_tiny_wordpiece())
    saved = AutoTokenizer.from_pretrained(str(tmp_path), local_files_only=True)
    assert len(saved) == 96 and load_pruned(tmp_path).config.vocab_size == 96
    assert "vocabulary" not in json.loads((tmp_path / "prunetune.json").read_text())
