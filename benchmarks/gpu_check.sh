#!/usr/bin/env bash
# The GPU checks of the generation-cost issue in one run (< 10 minutes on one H200), for a short device loan.
# Prepare here with `bash benchmarks/gpu_bundle.sh`, then run on the device machine from the repo root:
#   bash benchmarks/gpu_check.sh        (device tool: carry [".whl", ".gpu_inputs"]; results under $OUT or runs/gpu_check)
# Records, on the GPU: the sampler vs the naive two-forward loop (same knobs, and the fast knobs), the generation
# knobs (batch size, compile, bf16), the cost-vs-quality frontier of the sampling settings and one GKD epoch.
# Not yet run on a GPU (no device was lent when it was written): expect to fix a path or a package on first use.
set -uo pipefail
RESULTS=${OUT:-runs/gpu_check}
mkdir -p "$RESULTS"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
export KR_DATA_ROOT=$PWD/.gpu_inputs PYTHONUNBUFFERED=1
GEN=.gpu_inputs/generator
TEACHER=.gpu_inputs/teacher.ckpt
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$RESULTS/gpu.txt"
step() {  # name, seconds allowed, command...: one JSON-lines file per step; a failing step does not stop the rest
  local name=$1 limit=$2; shift 2
  echo "== $name"; local start=$SECONDS
  timeout "$limit" "$@" > "$RESULTS/$name.jsonl" 2> "$RESULTS/$name.err"; local rc=$?
  echo "$name rc=$rc $((SECONDS - start)) s" | tee -a "$RESULTS/summary.txt"; tail -n 3 "$RESULTS/$name.jsonl"
}
step sampling_same_knobs 90 python3 benchmarks/sampling.py --generator $GEN --n 546 --batch 546 --steps 10 \
  --sampler dpmsolver++ --pairs 5 --rows 256 2048
step sampling_fast_knobs 90 python3 benchmarks/sampling.py --generator $GEN --n 546 --batch 546 --steps 10 \
  --sampler dpmsolver++ --pairs 5 --rows --ours-steps 5 --ours-sampler unipc --ours-interval 0.4 4.0
step generation_knobs 120 python3 benchmarks/generation_knobs.py --generator $GEN --n 546 --rounds 3
step frontier 180 python3 benchmarks/sampling_frontier.py --generator $GEN --teacher $TEACHER \
  --dataset breastmnist --batch 546 --out "$RESULTS/frontier" --rounds 3 --spread-seeds 2
step gkd_epoch 120 python3 benchmarks/gkd_epoch.py --multipliers 1 4 --data.generator=$GEN --data.selection=null \
  --data.teacher_ckpt=$TEACHER --data.gen_batch_size=546 --trainer.accelerator=gpu
cp "$RESULTS/frontier/frontier.jsonl" "$RESULTS/frontier.jsonl" 2>/dev/null || true
cat "$RESULTS/summary.txt"
