import importlib.util
import json

import numpy as np
import pytest

from conftest import REPO

spec = importlib.util.spec_from_file_location(
    "checkpoint_rules_script", REPO / "experiments" / "ablations" / "checkpoint_rules.py"
)
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)


def write_run(folder, correct_share, rng):
    """Epoch e is right on a random ``correct_share[e]`` of 40 images (confidence 0.8), labels all 0."""
    folder.mkdir(parents=True)
    correct = np.stack([rng.random(40) < share for share in correct_share])
    p0 = np.where(correct, 0.8, 0.2)
    probs = np.stack([p0, 1 - p0], axis=-1).astype(np.float32)
    np.savez(
        folder / "val_predictions.npz",
        epochs=np.arange(len(correct_share)),
        probs=probs,
        labels=np.zeros(40, dtype=np.int64),
    )


def test_the_script_scores_every_rule_held_out_and_compares_it_with_acc(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for seed in range(2):
        write_run(tmp_path / f"seed{seed}" / "student", [0.5, 0.6, 0.95, 0.1], rng)  # the last epoch collapses
    script.main([str(tmp_path / "seed0" / "student"), str(tmp_path / "seed1" / "student"), "--splits", "20",
                 "--out", str(tmp_path / "rules.json")])  # fmt: skip
    out = capsys.readouterr().out
    assert "| seed0/student | 2 / " in out and "| seed1/student |" in out
    saved = json.loads((tmp_path / "rules.json").read_text())
    for run in saved["runs"].values():
        assert run["acc"]["epoch"] == run["loss"]["epoch"] == 2 and run["last"]["epoch"] == 3
        assert run["acc"]["held_out"] > 0.85 and run["last"]["held_out"] < 0.2
    assert saved["summary"]["last"]["better"] == 0 and saved["summary"]["last"]["minus_acc_mean"] < -0.6
    assert "last - acc, held out: -0." in out


def test_a_run_without_saved_predictions_says_which_callback_to_add(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(FileNotFoundError, match="callbacks\\+=kr_lightning.callbacks.ValPredictions"):
        script.main([str(tmp_path / "run")])
