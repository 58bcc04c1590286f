#!/usr/bin/env bash
# One GPU session, prepared: everything issues 21 and 22 need measured, in one command of at most 580 s on one
# H100 / H200, with no network. Run from the project's root on the GPU machine (where a CUDA torch is installed):
#
#     bash scripts/gpu_session.sh            # logs into $OUT (the device runner's folder), else outputs/gpu_session
#
# 1. the wheels the machine lacks, from .whl/ (made beforehand with scripts/gpu_wheels.sh; carry .whl when the
#    runner copies only tracked files), installed offline into /tmp/site; the package runs from the checkout;
# 2. the GPU check, every row but its compiled pair (scripts/gpu_check.py, 15 steps per throughput row): the
#    benches below measure compiled Trainer and loop at the recipes' micro-batches instead, the same code;
# 3. a profile of compiled Trainer steps at micro-batch 16, GPT-2-medium shape (scripts/profile_step.py), with its
#    Chrome trace: what issue 22's changes are to be chosen from;
# 4. Trainer beside a plain loop, compiled (benchmarks/bench_gpu_train.py): the medium shape at micro-batch 16,
#    then the XL-shaped inherited model (24 of 48 blocks, width 1600) at micro-batch 8, the recipes' settings.
# Each stage has its own time limit, so a hang in one leaves the others their time; every log is tee'd into $OUT,
# and every row is printed as it is measured, so a stage cut short keeps what it measured. The medium bench's cells
# trace the profile's graph (inductor's on-disk cache may hold it); the XL stage compiles cold and comes last.
# The wheels (.whl/, made by scripts/gpu_wheels.sh: the kit of ../shared/offline-gpu/ and DeepSpeed's) installed in
# 7 s into a Python 3.12 environment on a 2-core CPU.
#
# A rehearsal on CPU, tiny shapes, the same stages and flags (tests/test_gpu_check.py runs it under make test-slow):
#
#     GPU_SESSION_FLAGS="--device cpu --tiny" OUT=/tmp/rehearsal bash scripts/gpu_session.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-outputs/gpu_session}
PY=${PYTHON:-python3}
read -r -a FLAGS <<<"${GPU_SESSION_FLAGS:-}"  # appended to every stage's command: the rehearsal's --device cpu --tiny
mkdir -p "$OUT"
started=$(date +%s)

stage() {  # stage NAME SECONDS COMMAND...: run with a limit, tee into $OUT/NAME.txt, report its status and time
  local name=$1 limit=$2
  shift 2
  local t0
  t0=$(date +%s)
  echo "### $name (limit ${limit}s): $*" | tee "$OUT/$name.txt"
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$OUT/$name.txt"
  local status=${PIPESTATUS[0]}
  echo "### $name: exit $status after $(($(date +%s) - t0)) s" | tee -a "$OUT/$name.txt" "$OUT/summary.txt"
}

WHEELS=${GPU_SESSION_WHEELS:-.whl}  # another folder (an empty one: none) for the rehearsal's test
if compgen -G "$WHEELS/*.whl" >/dev/null; then
  stage install 40 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$WHEELS"/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  echo "no wheels in $WHEELS/: using the packages installed here" | tee -a "$OUT/summary.txt"
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

{
  date -u +%FT%TZ
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PY" -c "import sys, torch, transformers, datasets, accelerate; print('python', sys.version.split()[0], \
'torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__, \
'datasets', datasets.__version__, 'accelerate', accelerate.__version__)"
} 2>&1 | tee -a "$OUT/summary.txt"  # the machine, beside a line per stage: 8 files come back in all

ROWS=train,loop,smoke-bf16,smoke-fsdp,attention,distill,collapse,smoke-zero2  # all but train-compile, loop-compile
stage gpu_check 240 "$PY" scripts/gpu_check.py --rows "$ROWS" --steps 15 --log "$OUT/gpu_check.log" "${FLAGS[@]}"
stage profile_step 100 "$PY" scripts/profile_step.py --micro_batch 16 --compile --wait 5 --active 3 \
  --trace "$OUT/step_trace.json" "${FLAGS[@]}"
stage bench_gpu_train 110 "$PY" benchmarks/bench_gpu_train.py --shape medium --micro_batch 16 --compile on \
  --steps 15 --warmup 5 "${FLAGS[@]}"
stage bench_gpu_train_xl 90 "$PY" benchmarks/bench_gpu_train.py --shape xl --micro_batch 8 --compile on \
  --steps 15 --warmup 5 "${FLAGS[@]}"
echo "### session: $(($(date +%s) - started)) s" | tee -a "$OUT/summary.txt"
