#!/usr/bin/env bash
# The GPU profile's recipes (the headline `make reproduce-medmnist`) on CUDA, shortened by the gpu_short overlay, for
# a short device loan: first benchmarks/generator_step.py, then the pipeline, then the sampler benchmark on the
# generator it trained, each under its own time limit (STEP_LIMIT, PIPELINE_LIMIT, SAMPLING_LIMIT seconds;
# 0 skips the first or the last). Checks that every stage runs on the GPU with the recipes' real networks, bf16-mixed
# precision and batch sizes, and times each stage. On one H200 (benchmarks/README.md) `STEP_LIMIT=0 SAMPLING_LIMIT=0
# GEN_STEPS=200 PIPELINE_LIMIT=290` reached the last baseline's test; the report needs a little more. Prepare here with
# `bash benchmarks/gpu_bundle.sh` (wheels and the BreastMNIST npz), then on the device machine, from the repo root
# (device tool: carry [".whl", ".gpu_inputs"]):
#   bash benchmarks/gpu_recipes.sh            (results under $OUT, else runs/gpu_recipes)
set -uo pipefail
RESULTS=${OUT:-runs/gpu_recipes}
RUNS=${GPU_RUNS:-/tmp/gpu_runs}
mkdir -p "$RESULTS"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
export KR_DATA_ROOT=$PWD/.gpu_inputs PYTHONUNBUFFERED=1 WANDB_MODE=disabled HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$RESULTS/gpu.txt"
python3 -c "import torch, lightning, diffusers; print('torch', torch.__version__, 'lightning', lightning.__version__,
'diffusers', diffusers.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$RESULTS/gpu.txt"
: > "$RESULTS/summary.txt"
if [ "${STEP_LIMIT:-150}" != 0 ]; then  # STEP_LIMIT=0 skips the step benchmark
  echo "== generator_step" && timeout "${STEP_LIMIT:-150}" python3 benchmarks/generator_step.py --steps 30 --warmup 6 \
    > "$RESULTS/generator_step.jsonl" 2> "$RESULTS/generator_step.err"
  echo "generator_step rc=$?" | tee -a "$RESULTS/summary.txt"; cat "$RESULTS/generator_step.jsonl"
fi
overlays=experiments/overlays/gpu_short
if [ -n "${GEN_STEPS:-}" ]; then  # a shorter generator fit (two candidates), e.g. to reach the later stages sooner
  mkdir -p /tmp/gen_steps && overlays="[$overlays,/tmp/gen_steps]"
  sed -e "s/max_steps: 400/max_steps: $GEN_STEPS/" -e "s/every_n_train_steps: 200/every_n_train_steps: $((GEN_STEPS / 2))/" \
    experiments/overlays/gpu_short/generator.yaml > /tmp/gen_steps/generator.yaml
fi
start=$SECONDS
timeout "${PIPELINE_LIMIT:-300}" python3 -m kr_lightning pipeline --datasets='[breastmnist]' --profile=gpu \
  --overlays="$overlays" --variants='[soft_static]' --mia=false \
  --runs="$RUNS" --results="$RESULTS" --name=gpu_short > "$RESULTS/pipeline.log" 2>&1
echo "pipeline rc=$? $((SECONDS - start)) s" | tee -a "$RESULTS/summary.txt"
grep -a "^pipeline:" "$RESULTS/pipeline.log" | tail -n 30
grep -a -B2 -A25 "Traceback" "$RESULTS/pipeline.log" | tail -n 60
# each stage's record (wall time, steps, epochs, device) in one file
python3 - "$RUNS/breastmnist/seed0" > "$RESULTS/stages.json" <<'PY'
import json, sys
from pathlib import Path
seed = Path(sys.argv[1])
out = {}
for record in sorted(seed.glob("*/run.json")) + sorted(seed.glob("*/test/run.json")):
    out[str(record.parent.relative_to(seed))] = {k: v for k, v in json.loads(record.read_text()).items() if k != "packages"}
for name in ("select/selection.json", "student/test/test_metrics.json", "teacher/test/test_metrics.json"):
    if (seed / name).is_file():
        out[name] = json.loads((seed / name).read_text())
print(json.dumps(out, indent=1, default=str))
PY
cat "$RESULTS/stages.json" | python3 -c "import json,sys; [print(k, v.get('wall_seconds'), v.get('global_step'))
 for k, v in json.load(sys.stdin).items() if isinstance(v, dict) and 'wall_seconds' in v]"
GEN=$RUNS/breastmnist/seed0/generator/export
if [ -d "$GEN" ] && [ "${SAMPLING_LIMIT:-90}" != 0 ]; then  # SAMPLING_LIMIT=0 skips it
  echo "== sampling" && timeout "${SAMPLING_LIMIT:-90}" python3 benchmarks/sampling.py --generator "$GEN" --n 1024 --batch 1024 --steps 25 \
    --sampler dpmsolver++ --pairs 3 --rows 256 2048 > "$RESULTS/sampling.jsonl" 2> "$RESULTS/sampling.err"
  echo "sampling rc=$?" | tee -a "$RESULTS/summary.txt"; tail -n 3 "$RESULTS/sampling.jsonl"
fi
gzip -f "$RESULTS/pipeline.log"
cat "$RESULTS/summary.txt"
