#!/usr/bin/env bash
# Prepare, on this (CPU) machine, what the GPU scripts need on a bare GPU machine that cannot reach PyPI:
#   .whl/        wheels of the packages kr_lightning needs that the device image lacks (Python 3.12, pure Python),
#                at the versions installed in .venv here
#   .gpu_inputs/ the BreastMNIST npz and, where they exist, a trained generator (export folder or checkpoint) and
#                the teacher checkpoint (benchmarks/gpu_check.sh needs them; benchmarks/gpu_recipes.sh trains its own)
# Both are git-ignored through .git/info/exclude and travel with `carry: [".whl", ".gpu_inputs"]`.
#   bash benchmarks/gpu_bundle.sh [GENERATOR] [TEACHER_CKPT]
set -euo pipefail
GENERATOR=${1:-runs/breastmnist/seed0/generator/export}
TEACHER=${2:-runs/breastmnist/seed0/teacher/checkpoints/best.ckpt}
DATA=${KR_DATA_ROOT:-../shared/data}
[ -e "$DATA/breastmnist.npz" ] || { echo "gpu_bundle: $DATA/breastmnist.npz is missing (set KR_DATA_ROOT)" >&2; exit 1; }
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
grep -qx '/.gpu_inputs/' .git/info/exclude 2>/dev/null || echo '/.gpu_inputs/' >> .git/info/exclude
rm -rf .gpu_inputs .whl && mkdir -p .gpu_inputs .whl
cp "$DATA/breastmnist.npz" .gpu_inputs/
if [ -e "$GENERATOR" ] && [ -e "$TEACHER" ]; then
  cp -r "$GENERATOR" .gpu_inputs/generator
  cp "$TEACHER" .gpu_inputs/teacher.ckpt
else
  echo "gpu_bundle: no $GENERATOR or $TEACHER: bundling the data alone (enough for benchmarks/gpu_recipes.sh)"
fi
# the device image has torch, lightning, torchmetrics, scikit-learn, scikit-image, matplotlib, scipy, pandas, PyYAML,
# huggingface-hub, safetensors (KINDS.md); these are the rest of pyproject's dependencies and their own pure-Python
# needs, pinned to what this .venv runs
names="diffusers jsonargparse docstring-parser typeshed-client omegaconf prdc medmnist fire termcolor opacus
  importlib-metadata lazy-importer"
pins=$(.venv/bin/python -c "import sys; from importlib.metadata import version
print(' '.join(f'{n}=={version(n)}' for n in sys.argv[1:]))" $names)
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl $pins
du -sh .whl .gpu_inputs
