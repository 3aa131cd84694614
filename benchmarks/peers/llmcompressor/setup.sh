#!/usr/bin/env bash
# Build the private virtual environment for the llm-compressor peer baseline.
#
#   bash benchmarks/peers/llmcompressor/setup.sh
#
# Creates benchmarks/peers/llmcompressor/.venv (git-ignored), installs a CPU
# build of torch first and then llm-compressor, and records the installed
# versions in versions.txt next to this script.  Idempotent: when the venv
# already imports everything at the pinned versions it does nothing (pass
# --force to rebuild from scratch).
#
# Environment overrides:
#   PYTHON          interpreter used to create the venv (default: python3.11, else python3)
#   TORCH_VERSION   torch release to pin (default 2.13.0)
#   LLMC_VERSION    llmcompressor release to pin (default 0.14.0.1, the newest
#                   release whose requirements accept torch 2.13: torch>=2.10,<=2.14.0)
#   ALLOW_CUDA_TORCH=1  fall back to the plain (CUDA, multi-GB) torch wheel when
#                   no "+cpu" wheel of TORCH_VERSION can be found
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv"
VPY="$VENV/bin/python"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
LLMC_VERSION="${LLMC_VERSION:-0.14.0.1}"
VERSIONS="$HERE/versions.txt"

if [[ "${1:-}" == "--force" ]]; then
    rm -rf "$VENV"
fi

# Prints the versions (and exits non-zero when anything is missing or off-pin).
probe() {
    LLM_COMPRESSOR_LOG_DISABLED=true "$VPY" - "$TORCH_VERSION" "$LLMC_VERSION" <<'EOF'
import sys
from importlib.metadata import version
want_torch, want_llmc = sys.argv[1], sys.argv[2]
import torch, transformers, compressed_tensors, llmcompressor  # noqa: F401
from llmcompressor import oneshot  # noqa: F401
from llmcompressor.modifiers.pruning import SparseGPTModifier, WandaPruningModifier  # noqa: F401
tv = torch.__version__.split("+")[0]
if tv != want_torch:
    sys.exit(f"torch {torch.__version__} installed, want {want_torch}")
if version("llmcompressor") != want_llmc:
    sys.exit(f"llmcompressor {version('llmcompressor')} installed, want {want_llmc}")
print(f"llmcompressor=={version('llmcompressor')}")
print(f"compressed-tensors=={version('compressed-tensors')}")
print(f"transformers=={version('transformers')}")
print(f"torch=={torch.__version__}")
print(f"torch.cuda={torch.version.cuda}")
print(f"python=={sys.version.split()[0]}")
EOF
}

if [[ -x "$VPY" ]] && probe >/dev/null 2>&1; then
    probe > "$VERSIONS"
    echo "llm-compressor venv already set up at $VENV:"
    cat "$VERSIONS"
    exit 0
fi

if [[ -z "${PYTHON:-}" ]]; then
    if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi

echo "== creating $VENV with $PYTHON"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VPY" -m pip install --quiet --upgrade pip

# torch first, as a CPU build: a bare "torch" requirement would resolve to the
# CUDA wheel from PyPI (several GB of nvidia-* packages).
TORCH_SPEC="torch==${TORCH_VERSION}+cpu"
echo "== installing $TORCH_SPEC"
if ! "$VPY" -m pip install "$TORCH_SPEC"; then
    if [[ "${ALLOW_CUDA_TORCH:-0}" == "1" ]]; then
        TORCH_SPEC="torch==${TORCH_VERSION}"
        echo "== no CPU wheel found; ALLOW_CUDA_TORCH=1, installing $TORCH_SPEC"
        "$VPY" -m pip install "$TORCH_SPEC"
    else
        echo "setup.sh: no CPU wheel '$TORCH_SPEC' is reachable by pip; refusing to pull the CUDA build" >&2
        echo "          (set ALLOW_CUDA_TORCH=1 to accept it, or TORCH_VERSION=... for another release)" >&2
        exit 1
    fi
fi

# llm-compressor, with torch repeated as a requirement so that pip keeps the
# CPU build instead of "upgrading" it.
echo "== installing llmcompressor==$LLMC_VERSION"
"$VPY" -m pip install "$TORCH_SPEC" "llmcompressor==${LLMC_VERSION}"

probe > "$VERSIONS"
echo "== done; versions (also in $VERSIONS):"
cat "$VERSIONS"
