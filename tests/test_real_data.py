"""Tests on the real BreastMNIST file; under CI=true a missing file is a failure, not a skip."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from conftest import REPO, real_data_root
from kr_lightning.data import ImageDataModule


def breastmnist_root():
    root = real_data_root()
    if root is None:
        message = "breastmnist.npz not found in $KR_DATA_ROOT or ../shared/data"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return root


def test_real_breastmnist_from_data_root():
    root = breastmnist_root()
    dm = ImageDataModule(flag="breastmnist", root=str(root))
    sizes = {s: len(dm.split(s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 546, "val": 78, "test": 156}
    assert np.bincount(dm.split("train").labels).tolist() == [147, 399]
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (156, 1, 28, 28) and -1 <= x.min() < x.max() <= 1


@pytest.mark.long
def test_gpu_profile_pipeline_end_to_end_with_the_smoke_overlay(tmp_path):
    """The headline command's recipes (GPU profile) through every stage on BreastMNIST, shrunk to seconds on a CPU."""
    env = {**os.environ, "KR_DATA_ROOT": str(breastmnist_root())}
    command = [sys.executable, "-m", "kr_lightning", "pipeline", "--datasets=[breastmnist]", "--profile=gpu"]
    command += ["--overlays=experiments/overlays/smoke", "--variants=[hard_static]"]
    command += [f"--runs={tmp_path / 'runs'}", f"--results={tmp_path / 'results'}", "--name=smoke"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    seed = tmp_path / "runs" / "breastmnist" / "seed0"
    for stage in ("generator", "teacher", "student", "student_hard_static"):
        record = json.loads((seed / stage / "run.json").read_text())
        assert "finished" in record and record["dataset"] == "breastmnist", stage
    generator = yaml.safe_load((seed / "generator" / "config.yaml").read_text())
    assert generator["trainer"]["precision"] == "bf16-mixed"  # the GPU recipes, shrunk only where the overlay says
    assert generator["model"]["init_args"]["lr"] == 2.0e-4 and generator["data"]["init_args"]["batch_size"] == 32
    assert (seed / "generator" / "export" / "model_index.json").is_file()
    assert json.loads((seed / "select" / "selection.json").read_text())["dataset"] == "breastmnist"
    mia = json.loads((seed / "mia" / "mia.json").read_text())
    assert {"teacher", "student"} <= set(mia["models"])
    assert "breastmnist" in json.loads((tmp_path / "results" / "smoke.json").read_text())["tables"]
