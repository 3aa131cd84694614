"""A job spec reaches the structured granularities: real MiniLM, one entry per block's
heads and per block's MLP, cheap in-place masks with exact restore, and the gradient
criteria fed by the embedding task's loss."""

from __future__ import annotations

import torch
from helpers import minilm_spec_dict

from prunetune.engine.workbench import build_workbench
from prunetune.pruning.cache import ScoreCache
from prunetune.pruning.structured import StructuredPruner
from prunetune.spec import SearchSpec


def test_minilm_heads_and_neurons_from_a_spec(tmp_path) -> None:  # type: ignore[no-untyped-def]
    spec = SearchSpec.from_dict(minilm_spec_dict(
        space={"granularity": "heads+neurons", "criterion": "taylor", "max": 0.9, "step": 0.05},
    ))
    bench = build_workbench(spec, cache=ScoreCache(tmp_path))
    assert isinstance(bench.pruner, StructuredPruner)
    assert [layer.kind for layer in bench.layers] == ["heads", "neurons"] * 6
    assert bench.layers[0].rows == 12 and bench.layers[1].rows == 1536
    dense = {n: p.detach().clone() for n, p in bench.loaded.model.named_parameters()}
    alloc = [0.25, 0.5] * 6  # 3 of 12 heads and 768 of 1536 neurons per block
    metrics = bench.evaluator.evaluate(alloc)
    assert 0.0 < metrics["fidelity"] < 1.0
    q = bench.loaded.model.encoder.layer[0].attention.self.query.weight
    assert torch.equal(q, dense["encoder.layer.0.attention.self.query.weight"])  # restored
    with bench.pruner.applied(alloc):
        rows_gone = (q == 0).all(dim=1).sum()
        assert rows_gone == 3 * 32  # three heads of 32 dims
    for n, p in bench.loaded.model.named_parameters():
        assert torch.equal(p, dense[n]), n
    # The embedding task's loss gives the Taylor scores a signal on the dense model.
    scores = ScoreCache(tmp_path).get(next(iter(tmp_path.glob("scores-*"))).stem[len("scores-"):])
    assert scores is not None and all(s.abs().sum() > 0 for s in scores.values())


def _tiny_bert_directory(path) -> str:  # type: ignore[no-untyped-def]
    """A tiny BERT with MiniLM's tokenizer, saved as a local HF directory (no MiniLM weights)."""
    import shutil

    from transformers import BertConfig, BertModel

    from prunetune.engine.sources import minilm_path

    torch.manual_seed(0)
    model = BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                 intermediate_size=64, max_position_embeddings=128))
    model.save_pretrained(path)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(f"{minilm_path()}/{name}", path / name)
    return str(path)


def test_every_structured_granularity_runs_a_job_spec(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = _tiny_bert_directory(tmp_path / "bert")
    for granularity, criterion, entries in (("heads", "fisher", 2), ("neurons", "apoz", 2), ("blocks", "monte-carlo", 1),
                                           ("2:4", "taylor", 12)):
        spec = SearchSpec.from_dict(minilm_spec_dict(
            model={"path": path},
            space={"granularity": granularity, "criterion": criterion, "max": 0.9, "step": 0.05},
        ))
        bench = build_workbench(spec, cache=ScoreCache(tmp_path / "cache"))
        assert len(bench.layers) == entries, granularity
        before = {n: p.detach().clone() for n, p in bench.loaded.model.named_parameters()}
        metrics = bench.evaluator.evaluate([0.5] * entries)
        assert metrics["fidelity"] < 1.0 - 1e-6, granularity
        for n, p in bench.loaded.model.named_parameters():
            assert torch.equal(p, before[n]), (granularity, n)
        assert not bench.loaded.model.encoder.layer[0]._forward_hooks  # block hooks are gone
