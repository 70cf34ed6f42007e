#!/usr/bin/env bash
# CUDA check for a lent GPU machine, < 8 minutes: environment, the CUDA target tests, and a short CUDA bench on a
# randomly initialised model with SmolLM2-135M's exact shapes (speed does not depend on the weights' values; the real
# checkpoint is not carried to the device). Writes everything under $OUT (default ./gpu-check-out).
#   bash bench/gpu_check.sh                                   # from the repository root, on the GPU machine
#   TARGET=cpu BATCHES=1 NEW_TOKENS=8 THREADS=1 bash bench/gpu_check.sh  # dry run of the script's logic on a CPU machine
set -uo pipefail
OUT="${OUT:-$PWD/gpu-check-out}"
TARGET="${TARGET:-cuda}"
BATCHES="${BATCHES:-1,4,16,64}"
NEW_TOKENS="${NEW_TOKENS:-128}"
THREADS="${THREADS:-0}"  # CPU threads for the dry run (0: torch default)
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for c in .venv/bin/python python3 python; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c "import torch, transformers" >/dev/null 2>&1; then PY="$c"; break; fi
  done
fi
echo "== $(date -u +%FT%TZ) gpu_check on $(hostname), target $TARGET"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "nvidia-smi not found"
if [ -z "$PY" ]; then echo "FAIL: no python with torch and transformers found"; exit 1; fi
"$PY" - <<'PYEOF'
import torch, transformers
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(),
      "transformers", transformers.__version__)
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0))
PYEOF
if [ "$TARGET" = "cuda" ]; then
  "$PY" -c "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)" || { echo "FAIL: torch sees no CUDA device"; exit 1; }
fi

status=0
echo "== CUDA target tests"
timeout 240 "$PY" -m pytest -q -p no:cacheprovider tests/test_bench_cuda.py || status=1

echo "== short $TARGET bench (random weights, SmolLM2-135M shapes)"
timeout 300 "$PY" - "$OUT" "$TARGET" "$BATCHES" "$NEW_TOKENS" "$THREADS" <<'PYEOF' || status=1
import json, sys
from pathlib import Path

from transformers import LlamaForCausalLM

from slimserve.bench.api import bench
from slimserve.testing import tiny_llama_config, tiny_tokenizer
from tests.bench_helpers import long_text, write_manifest

out, target, batches, new_tokens = Path(sys.argv[1]), sys.argv[2], [int(b) for b in sys.argv[3].split(",")], int(sys.argv[4])
threads = int(sys.argv[5]) or None
cat = out / "catalog"
v = cat / "smollm2-shape-fp32"
if not v.exists():
    cfg = tiny_llama_config(49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                            num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048)
    LlamaForCausalLM(cfg).save_pretrained(v, safe_serialization=True)
    tiny_tokenizer().save_pretrained(v)
    write_manifest(v, "smollm2-shape-fp32", reference=True)
(out / "eval.txt").write_text(long_text(20000))
for loop in ("static-kv", "dynamic-kv", "generate"):
    recs = bench(catalog=cat, target=target, loop=loop, threads=threads, quality=False, eval_text=out / "eval.txt", rounds=2, iters=3,
                 min_seconds=1, batches=batches, new_tokens=new_tokens, out=out / "reports",
                 show=(loop == "static-kv"), command=f"bench/gpu_check.sh (target {target}, loop {loop})")
    s = recs[0].speed
    print(json.dumps({"loop": s.loop, "decode_tok_s": s.decode_tok_s.p50, "itl_p99_ms": s.itl_ms.p99,
                      "batch_tok_s": s.batch_tok_s, "batch_errors": s.batch_errors, "peak_mem_mb": s.peak_mem_mb,
                      "usd_1m_out": recs[0].cost.usd_per_1m_output, "batch_at_slo": recs[0].cost.batch}))
PYEOF
echo "== done, status $status; results in $OUT"
exit $status
