#!/usr/bin/env bash
# Fills .whl/ (ignored) with the wheels bench/gpu_check.sh installs on the lent GPU machine, which reaches no
# registry. That machine's image has python3 3.12 with torch 2.11+cu130 and transformers 5.x (see the device
# README's KINDS.md); slimserve is pinned to transformers 4.57 and compressed-tensors 0.17.1 (pyproject), so those
# and what they need beyond the image travel as wheels, all at constraints.txt's versions (about 20 MB of the 64 MiB
# a call may carry). vLLM is not among them: its wheel alone is several hundred MB, and it needs its own torch.
#   bash bench/gpu_wheels.sh            # from the repository root, on a machine with PyPI
set -euo pipefail
DEST="${1:-.whl}"
PIP="${PIP:-python3 -m pip}"
pin() { grep -i -E "^$1==" constraints.txt | head -1 || true; }
NAMES=(transformers tokenizers huggingface_hub compressed-tensors loguru pydantic pydantic_core annotated-types
  typing-inspection typing_extensions)
SPECS=()
for n in "${NAMES[@]}"; do
  s="$(pin "$n")"
  [ -n "$s" ] || { echo "gpu_wheels.sh: constraints.txt has no pin for $n" >&2; exit 2; }
  SPECS+=("$s")
done
mkdir -p "$DEST"
# shellcheck disable=SC2086
$PIP download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$DEST" "${SPECS[@]}"
ls -1 "$DEST"
du -sh "$DEST"
