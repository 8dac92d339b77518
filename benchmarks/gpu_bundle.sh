#!/usr/bin/env bash
# Prepare, on this (CPU) machine, what benchmarks/gpu_check.sh needs on a bare GPU machine that cannot reach PyPI:
#   .whl/        wheels of the packages kr_lightning needs that the device image lacks (Python 3.12, pure Python)
#   .gpu_inputs/ the BreastMNIST npz, a trained generator (export folder) and the teacher checkpoint
# Both are git-ignored through .git/info/exclude and travel with `carry: [".whl", ".gpu_inputs"]`.
#   bash benchmarks/gpu_bundle.sh [GENERATOR_EXPORT] [TEACHER_CKPT]
set -euo pipefail
GENERATOR=${1:-runs/breastmnist/seed0/generator/export}
TEACHER=${2:-runs/breastmnist/seed0/teacher/checkpoints/best.ckpt}
DATA=${KR_DATA_ROOT:-../shared/data}
for path in "$GENERATOR" "$TEACHER" "$DATA/breastmnist.npz"; do
  [ -e "$path" ] || { echo "gpu_bundle: $path is missing (train the generator and teacher stages first)" >&2; exit 1; }
done
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
grep -qx '/.gpu_inputs/' .git/info/exclude 2>/dev/null || echo '/.gpu_inputs/' >> .git/info/exclude
rm -rf .gpu_inputs && mkdir -p .gpu_inputs .whl
cp -r "$GENERATOR" .gpu_inputs/generator
cp "$TEACHER" .gpu_inputs/teacher.ckpt
cp "$DATA/breastmnist.npz" .gpu_inputs/
# the device image has torch, lightning, torchmetrics, scikit-learn, matplotlib, scipy, pandas, PyYAML (KINDS.md);
# these are the rest of pyproject's dependencies and their own pure-Python needs
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl \
  diffusers jsonargparse docstring-parser typeshed-client omegaconf antlr4-python3-runtime prdc medmnist fire \
  termcolor importlib-resources
du -sh .whl .gpu_inputs
