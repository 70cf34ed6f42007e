#!/usr/bin/env bash
# The one prepared check for a lent GPU machine (one NVIDIA H200, python3 3.12 with torch 2.11+cu130, no registry),
# under 10 minutes: installs the carried wheels, builds fp32/int8/int4 variants (compressed-tensors) of a random model
# with SmolLM2-135M's shapes (the real checkpoint, a 98 MB GGUF, does not fit in a call's 64 MiB; speed does not
# depend on the weights' values), benches them on slimserve's `cuda` target, serves the int4 variant to 16 concurrent
# requests in vLLM where vllm imports (the image has none and its wheel does not fit either: that line then says so),
# and prints one table, also written to OUT/table.md.
#
# On the day a GPU is lent, from the session's own checkout (the one the device tool sends), the lead runs:
#   bash bench/gpu_wheels.sh                         # here, once: fills .whl/ (ignored, ~19 MB) from PyPI
#   run(command="bash bench/gpu_check.sh --out $OUT", carry=[".whl"], timeout_s=480)   then give_back()
# The script keeps itself to --timeout (default 360 s; expected ~3 min without vLLM) so the call ends inside its
# limit with the table under $OUT, and a session's 15 device minutes (a start costs 1-2) leave room for one rerun,
# e.g. --variants int4 --timeout 240. Where vllm imports, give --timeout 540 and timeout_s=600: its step needs ~4 min.
# Dry run on a CPU machine (tiny model, target cpu, no vLLM):
#   PYTHON=.venv/bin/python bash bench/gpu_check.sh --dry-run --out /tmp/gpu-dry
#
# Exit codes: 0 all steps ran; 1 a step failed (the table still lists what ran); 2 a bad flag; 77 skipped: no GPU.
set -uo pipefail

usage() {
  cat <<'EOF'
usage: bash bench/gpu_check.sh [--dry-run] [--out DIR] [--variants LIST] [--skip-vllm] [--timeout SECONDS]
                               [--wheelhouse DIR|none] [--new-tokens N]
  --dry-run          run the logic on CPU with a tiny model and tiny settings (no GPU needed, vLLM skipped)
  --out DIR          where the log, JSON results and table.md go (default: $OUT, else ./gpu-check-out)
  --variants LIST    comma list of fp32, int8, int4 (default: fp32,int8,int4)
  --skip-vllm        do not try vLLM (its line says skipped)
  --timeout SECONDS  budget for the whole check, 60..3600 (default 360; --dry-run 300)
  --wheelhouse DIR   wheels to pip install --no-index before anything runs, or none
                     (default: .whl when it exists, none with --dry-run; fill it with bench/gpu_wheels.sh)
  --new-tokens N     tokens decoded per request, 4..1024 (default 64; --dry-run 4)
environment: PYTHON (default python3, the image's python with torch)
exit codes: 0 ok, 1 a step failed, 2 bad flag, 77 skipped (no GPU)
EOF
}

bad() {  # bad flag or value: say which and what is allowed, exit 2
  echo "gpu_check.sh: $1" >&2
  echo "run 'bash bench/gpu_check.sh --help' for the flags" >&2
  exit 2
}

is_int() { [[ "$1" =~ ^[0-9]+$ ]]; }

FLAGS="--dry-run, --out DIR, --variants LIST, --skip-vllm, --timeout SECONDS, --wheelhouse DIR|none, \
--new-tokens N, --help"
DRY=0 SKIP_VLLM=0 OUTDIR="${OUT:-$PWD/gpu-check-out}" VARIANTS="fp32,int8,int4" BUDGET="" WHEELS="" NEW=""
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --dry-run) DRY=1 ;;
    --skip-vllm) SKIP_VLLM=1 ;;
    --out | --variants | --timeout | --wheelhouse | --new-tokens)
      [ $# -ge 2 ] && [ -n "$2" ] || bad "$1 needs a value"
      case "$1" in
        --out) OUTDIR="$2" ;;
        --variants) VARIANTS="$2" ;;
        --timeout) BUDGET="$2" ;;
        --wheelhouse) WHEELS="$2" ;;
        --new-tokens) NEW="$2" ;;
      esac
      shift ;;
    *) bad "unknown flag '$1' (allowed: $FLAGS)" ;;
  esac
  shift
done
[[ ",$VARIANTS," != *",,"* ]] || bad "--variants: an empty name in '$VARIANTS' (allowed: fp32, int8, int4)"
IFS=',' read -r -a VLIST <<<"$VARIANTS"
for v in "${VLIST[@]}"; do
  case "$v" in fp32 | int8 | int4) ;; *) bad "--variants: unknown variant '$v' (allowed: fp32, int8, int4)" ;; esac
done
[ -z "$BUDGET" ] || { is_int "$BUDGET" && [ "$BUDGET" -ge 60 ] && [ "$BUDGET" -le 3600 ]; } ||
  bad "--timeout: '$BUDGET' is not a number of seconds in 60..3600"
[ -z "$NEW" ] || { is_int "$NEW" && [ "$NEW" -ge 4 ] && [ "$NEW" -le 1024 ]; } ||
  bad "--new-tokens: '$NEW' is not an integer in 4..1024"
if [ -n "$WHEELS" ] && [ "$WHEELS" != none ] && [ ! -d "$WHEELS" ]; then
  bad "--wheelhouse: '$WHEELS' is not a folder (give a folder of wheels, or none; bench/gpu_wheels.sh fills .whl)"
fi

if [ "$DRY" = 1 ]; then
  TARGET=cpu SHAPE=tiny BATCHES=1,2 BUDGET="${BUDGET:-300}" NEW="${NEW:-4}" WHEELS="${WHEELS:-none}"
  TIMING=(--prompt-len 16 --iters 1 --min-seconds 0.1)
else
  TARGET=cuda SHAPE=smollm2 BATCHES=1,16 BUDGET="${BUDGET:-360}" NEW="${NEW:-64}"
  TIMING=(--prompt-len 128 --iters 3 --min-seconds 1)
  [ -n "$WHEELS" ] || { [ -d .whl ] && WHEELS=.whl || WHEELS=none; }
fi
DEADLINE=$((SECONDS + BUDGET))

mkdir -p "$OUTDIR" || bad "--out: cannot create '$OUTDIR'"
OUTDIR="$(cd "$OUTDIR" && pwd)"
exec > >(tee "$OUTDIR/gpu_check.log") 2>&1
echo "== $(date -u +%FT%TZ) gpu_check on $(hostname): target $TARGET, variants $VARIANTS, budget ${BUDGET}s"

skip() {  # no GPU: the documented skip, exit 77
  echo "SKIP: $1 (use --dry-run to run the logic on CPU)"
  echo "skipped: $1" >"$OUTDIR/table.md"
  exit 77
}
if [ "$DRY" = 0 ]; then
  command -v nvidia-smi >/dev/null 2>&1 || skip "no GPU: nvidia-smi not found"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || skip "no GPU: nvidia-smi failed"
fi

PY="${PYTHON:-python3}"  # on the device image, python3 is the one with torch
command -v "$PY" >/dev/null 2>&1 || { echo "FAIL: no '$PY' here (set PYTHON to a python with torch)"; exit 1; }

if [ "$WHEELS" != none ]; then
  SITE="${TMPDIR:-/tmp}/gpu_check_site"
  echo "== installing $(ls "$WHEELS"/*.whl 2>/dev/null | wc -l) wheels from $WHEELS into $SITE (no index)"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    "$WHEELS"/*.whl || { echo "FAIL: could not install the wheels in $WHEELS"; exit 1; }
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# One python start for both checks: torch sees the GPU (else the skip), and slimserve's needs beyond torch import
# (else the wheel script is named, rather than a failure mid-way).
"$PY" - "$TARGET" <<'PYEOF'
import sys, torch
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
      "available", torch.cuda.is_available())
if sys.argv[1] == "cuda" and not torch.cuda.is_available():
    sys.exit(77)
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0))
try:
    import compressed_tensors, pydantic, transformers
    import slimserve.bench.api, slimserve.builder
except ImportError as e:
    print(f"FAIL: {e}")
    sys.exit(3)
print("transformers", transformers.__version__, "compressed-tensors", compressed_tensors.__version__)
PYEOF
case $? in
  0) ;;
  77) skip "no GPU: torch.cuda.is_available() is False" ;;
  3) echo "FAIL: slimserve's dependencies do not import (carry .whl from bench/gpu_wheels.sh, see --help)"; exit 1 ;;
  *) echo "FAIL: python/torch check"; exit 1 ;;
esac

status=0
step() {  # step NAME CAP CMD...: run CMD with the smaller of CAP and what is left of the budget
  local name="$1" cap="$2" left=$((DEADLINE - SECONDS))
  shift 2
  [ "$left" -lt "$cap" ] && cap="$left"
  if [ "$cap" -lt 10 ]; then echo "== $name: skipped, out of time"; status=1; return 1; fi
  echo "== $name (at most ${cap}s)"
  local t0=$SECONDS rc=0
  timeout -k 5 "$cap" "$@" || rc=$?
  echo "-- $name: exit $rc after $((SECONDS - t0))s"
  [ "$rc" = 0 ] && return 0
  echo "FAIL: $name (exit $rc$([ "$rc" = 124 ] && echo ', out of time'))"
  status=1
  return 1
}

# The models stay out of OUT: only 8 files come back from the device machine, and they should be the results.
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")" || { echo "FAIL: mktemp"; exit 1; }
trap 'rm -rf "$WORK"' EXIT
CAT="$WORK/catalog" BASE="$WORK/base"
NAMES=$(printf 'gpu-%s,' "${VLIST[@]}")
NAMES="${NAMES%,}"
rm -f "$OUTDIR/bench.json" "$OUTDIR/vllm.json" "$OUTDIR/cuda_tests.txt"
if [ "$DRY" = 0 ]; then  # the cuda target's own tests (the lean loops agree with generate(), OOM is reported)
  step "CUDA target tests" 150 bash -c \
    'set -o pipefail; "$0" -m pytest -q -p no:cacheprovider tests/test_bench_cuda.py | tee "$1"' "$PY" "$WORK/pt.txt"
  echo "tests/test_bench_cuda.py: $(tail -1 "$WORK/pt.txt" 2>/dev/null)" >"$OUTDIR/cuda_tests.txt"
fi
step "random base ($SHAPE shapes), build $NAMES" 240 "$PY" bench/gpu_check.py build --catalog "$CAT" \
  --base "$BASE" --shape "$SHAPE" --variants "$NAMES" &&
  step "bench on $TARGET" 240 "$PY" bench/gpu_check.py bench --catalog "$CAT" --target "$TARGET" --variants "$NAMES" \
    --out "$OUTDIR" --batches "$BATCHES" --new-tokens "$NEW" "${TIMING[@]}"

vllm_why=""
if [ "$DRY" = 1 ]; then vllm_why="dry run (vLLM needs a GPU)"
elif [ "$SKIP_VLLM" = 1 ]; then vllm_why="--skip-vllm"
elif [[ ",$VARIANTS," != *",int4,"* ]]; then vllm_why="int4 not among --variants"
elif [ ! -d "$CAT/gpu-int4" ]; then vllm_why="the int4 variant was not built"
elif ! err="$("$PY" -c "import vllm" 2>&1)"; then
  vllm_why="vllm does not import ($(echo "$err" | tail -1)): the lent image has none and reaches no registry, and \
its wheel alone exceeds a call's 64 MiB"
fi
if [ -n "$vllm_why" ]; then
  "$PY" bench/gpu_check.py vllm --catalog "$CAT" --out "$OUTDIR" --skip "$vllm_why"
elif ! step "vLLM: gpu-int4, 16 concurrent requests" 240 "$PY" bench/gpu_check.py vllm --catalog "$CAT" \
  --out "$OUTDIR" --requests 16 --new-tokens "$NEW"; then
  "$PY" bench/gpu_check.py vllm --catalog "$CAT" --out "$OUTDIR" --skip "failed or ran out of time (see gpu_check.log)"
fi

echo "== table (also $OUTDIR/table.md)"
"$PY" bench/gpu_check.py table --out "$OUTDIR" || status=1
echo "== done in ${SECONDS}s, status $status; results in $OUTDIR"
exit $status
