"""One-shot commands of ``prunetune``: ``prune`` (one model, one sparsity, an export) and
``evaluate`` (one allocation or one exported model scored on a spec's REPORT split)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from prunetune.cli.console import fail
from prunetune.errors import PrunetuneError

app = typer.Typer()


def _model_spec(model: str) -> Any:
    """``minilm`` (bundled), a local Hugging Face directory or a Hub id (``org/name``, read
    from the Hugging Face cache), as a spec's ``model``."""
    from prunetune.spec import BUNDLED_MODELS, ModelSpec

    if model in BUNDLED_MODELS:
        return ModelSpec.model_validate({"source": model})
    if Path(model).expanduser().is_dir():
        return ModelSpec.model_validate({"path": model})
    if "/" in model and not model.startswith((".", "/", "~")):  # org/name: a Hub id, from the HF cache
        return ModelSpec.model_validate({"hub": model})
    raise ValueError(f"argument 'MODEL': got {model!r}; give {' or '.join(BUNDLED_MODELS)} (bundled), a local "
                     "Hugging Face model directory (config.json and *.safetensors) or a Hub id in the HF cache")


def calibration_batches(tokenizer: Any, path: Path, samples: int, batch_size: int, max_length: int) -> list[Any]:
    """The first ``samples`` text chunks of a UTF-8 ``.txt`` file (paragraphs cut into
    8-60 words, in file order), tokenised in batches: what ``prune`` calibrates on."""
    from prunetune.evaluators.data import file_chunks

    if tokenizer is None:
        raise ValueError("option '--calibration': the model has no tokenizer to read text with")
    try:
        chunks = file_chunks(path)[:samples]
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"option '--calibration': got {str(path)!r}; a readable UTF-8 .txt file ({err})") from None
    if not chunks:
        raise ValueError(f"option '--calibration': got {str(path)!r}; the file has no paragraph of 8 words or more")
    return [tokenizer(chunks[i : i + batch_size], padding=True, truncation=True, max_length=max_length,
                      return_tensors="pt") for i in range(0, len(chunks), batch_size)]


@app.command()
def prune(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="minilm (bundled), a local HF model directory or a Hub id")],
    sparsity: Annotated[float, typer.Option(help="fraction of weights (structures) removed per layer")],
    out: Annotated[Path, typer.Option(help="folder to write the pruned model to")],
    criterion: Annotated[str, typer.Option(help="importance criterion, e.g. magnitude, wanda")] = "magnitude",
    granularity: Annotated[str, typer.Option(help="unstructured, 2:4, 4:8, heads, neurons, blocks, ...")] =
        "unstructured",
    calibration: Annotated[Path | None, typer.Option(help="UTF-8 .txt file the data-driven criteria read")] = None,
    samples: Annotated[int, typer.Option(help="calibration text chunks used")] = 128,
    batch_size: Annotated[int, typer.Option(help="calibration chunks per forward pass")] = 16,
    max_length: Annotated[int, typer.Option(help="tokens per calibration chunk")] = 128,
    format: Annotated[str, typer.Option(help="unstructured/N:M weights: dense or compressed-tensors")] = "dense",
) -> None:
    """Prune one model at one sparsity and export it (with its tokenizer)."""
    import prunetune
    from prunetune.engine.sources import load_model

    for name, value, low in (("--samples", samples, 1), ("--batch-size", batch_size, 1),
                             ("--max-length", max_length, 8)):
        if value < low:
            fail(f"option '{name}': got {value}; must be >= {low}")
    try:
        loaded = load_model(_model_spec(model))
        batches = None if calibration is None else calibration_batches(
            loaded.tokenizer, calibration, samples, batch_size, max_length)
        report = prunetune.prune(loaded.model, sparsity, criterion=criterion, granularity=granularity,
                                 calibration=batches)
        path = prunetune.export(loaded.model, out, tokenizer=loaded.tokenizer, format=format)
    except (PrunetuneError, ValueError, TypeError, ImportError, OSError) as err:
        fail(str(err))
    files = json.loads((path / "prunetune.json").read_text()).get("files", {})
    typer.echo(f"{loaded.name}: {granularity} {criterion}, overall sparsity {report.sparsity:.4f} "
               f"({report.params_before:,d} -> {report.params_after:,d} parameters in the pruned layers)")
    for name, size in files.items():
        typer.echo(f"  {size:>12,d} bytes  {name}")
    typer.echo(str(path.resolve()))


@app.command()
def evaluate(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC.yaml", help="job spec: model, task and space")],
    allocation: Annotated[Path | None, typer.Option(
        help="JSON {layer: sparsity} (or a front.json point with an 'allocation')")] = None,
    export: Annotated[Path | None, typer.Option(help="a folder written by prunetune export / prune")] = None,
) -> None:
    """Score one allocation or one exported model on the spec's task, REPORT split (JSON)."""
    from prunetune.engine.standalone import score_allocation, score_export
    from prunetune.spec import SearchSpec

    if (allocation is None) == (export is None):
        fail("give exactly one of --allocation FILE or --export DIR")
    try:
        spec = SearchSpec.from_yaml(spec_path)
        if allocation is not None:
            result = score_allocation(spec, allocation)
        else:
            assert export is not None  # one of the two, checked above
            result = score_export(spec, export)
    except (PrunetuneError, ValueError, TypeError, OSError) as err:
        fail(str(err))
    typer.echo(json.dumps(result, indent=2))
