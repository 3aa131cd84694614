"""One-shot prune and export of MiniLM through the CLI, as the README shows it: sizes on
disk of the dense, sparse-bitmask and 2:4 exports, and their REPORT-split quality.

Runs the README's commands on the bundled all-MiniLM-L6-v2, with a calibration file
written from Python's bundled documentation (the first 40 pydoc topics, in order):

    prunetune prune minilm --sparsity 0.5 --criterion wanda [--granularity 2:4] \
        --calibration data.txt --out DIR [--format compressed-tensors]
    prunetune evaluate examples/minilm.yaml --export DIR

and records, per export, the bytes of ``model.safetensors`` and of the whole folder
(tokenizer and configs included), against the original model's ``model.safetensors``;
each compressed-tensors export is decompressed by the ``compressed-tensors`` package into
a fresh model and compared with the dense export's weights (they must be equal).
Writes ``benchmarks/results/export_formats.json`` (with the README table as markdown);
the last line printed is::

    RESULT dense=<bytes> bitmask=<bytes> sparse24=<bytes> original=<bytes> fidelity_unstructured=<...> fidelity_24=<...>

Run heavy: ``flock /tmp/prunetune-heavy.lock .venv/bin/python benchmarks/export_formats.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from _common import ROOT, provenance

SPEC = ROOT / "examples" / "minilm.yaml"
RUNS: dict[str, list[str]] = {
    "unstructured": ["--sparsity", "0.5", "--criterion", "wanda"],
    "2:4": ["--sparsity", "0.5", "--criterion", "wanda", "--granularity", "2:4"],
}


def _cli(args: list[str], cwd: Path) -> str:
    exe = Path(sys.executable).parent / "prunetune"
    proc = subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, env=dict(os.environ))
    if proc.returncode:
        raise RuntimeError(f"prunetune {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def _same_weights(dense_dir: Path, ct_dir: Path) -> bool:
    from compressed_tensors.compressors import ModelCompressor
    from transformers import AutoConfig, AutoModel

    dense = AutoModel.from_pretrained(dense_dir, local_files_only=True)
    fresh = AutoModel.from_config(AutoConfig.from_pretrained(dense_dir, local_files_only=True))
    ModelCompressor.from_pretrained(str(ct_dir)).decompress(str(ct_dir), fresh)
    ref = dense.state_dict()
    return all(torch.equal(t, ref[k]) for k, t in fresh.state_dict().items())


def _folder_bytes(d: Path) -> int:
    return sum(f.stat().st_size for f in d.rglob("*") if f.is_file())


def main() -> dict[str, Any]:
    from pydoc_data.topics import topics

    from prunetune.engine.sources import load_model, minilm_path
    from prunetune.spec import SearchSpec

    original = (Path(minilm_path()) / "model.safetensors").stat().st_size
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "data.txt").write_text("\n\n".join(topics[k] for k in sorted(topics)[:40]))
        for granularity, args in RUNS.items():
            base = ["prune", "minilm", *args, "--calibration", "data.txt"]
            _cli([*base, "--out", "dense"], work)
            _cli([*base, "--out", "ct", "--format", "compressed-tensors"], work)
            scored = json.loads(_cli(["evaluate", str(SPEC), "--export", "dense"], work))
            ct_format = json.loads((work / "ct" / "prunetune.json").read_text())["compressed_tensors"]["format"]
            for fmt, folder in (("dense safetensors", "dense"), (ct_format, "ct")):
                rows.append({
                    "granularity": granularity, "format": fmt,
                    "model_safetensors_bytes": (work / folder / "model.safetensors").stat().st_size,
                    "folder_bytes": _folder_bytes(work / folder),
                    "report_fidelity": scored["fidelity"],
                    "same_weights_as_dense": True if folder == "dense" else _same_weights(work / "dense", work / "ct"),
                })
            for folder in ("dense", "ct"):
                subprocess.run(["rm", "-rf", str(work / folder)], check=True)
    spec = SearchSpec.from_yaml(SPEC)
    lines = ["| export (Wanda 0.5, MiniLM) | format | model.safetensors | vs original | whole folder | REPORT fidelity |",
             "|---|---|---|---|---|---|"]
    lines.append(f"| original all-MiniLM-L6-v2 | dense | {original / 1e6:.1f} MB | x1.00 | | 1.000 |")
    for r in rows:
        lines.append(f"| {r['granularity']} | {r['format']} | {r['model_safetensors_bytes'] / 1e6:.1f} MB | "
                     f"x{r['model_safetensors_bytes'] / original:.2f} | {r['folder_bytes'] / 1e6:.1f} MB | "
                     f"{r['report_fidelity']:.3f} |")
    result = {
        "benchmark": "export_formats",
        "original_model_safetensors_bytes": original,
        "rows": rows,
        "table_md": "\n".join(lines),
        "commands": [" ".join(["prunetune", "prune", "minilm", *a, "--calibration", "data.txt", "--out", "DIR"])
                     for a in RUNS.values()],
        "provenance": provenance({"runs": RUNS, "spec": str(SPEC)}, spec=spec,
                                 loaded=load_model(spec.model)),
    }
    out = ROOT / "benchmarks" / "results" / "export_formats.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(result["table_md"])
    by = {(r["granularity"], r["format"]): r for r in rows}
    print(f"RESULT dense={by[('unstructured', 'dense safetensors')]['model_safetensors_bytes']} "
          f"bitmask={by[('unstructured', 'sparse-bitmask')]['model_safetensors_bytes']} "
          f"sparse24={by[('2:4', 'sparse-24-bitmask')]['model_safetensors_bytes']} original={original} "
          f"fidelity_unstructured={by[('unstructured', 'dense safetensors')]['report_fidelity']:.4f} "
          f"fidelity_24={by[('2:4', 'dense safetensors')]['report_fidelity']:.4f}")
    return result


if __name__ == "__main__":
    main()
