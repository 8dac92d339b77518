import importlib.util

import numpy as np
import pytest

from conftest import REPO

spec = importlib.util.spec_from_file_location("class_recall", REPO / "experiments" / "ablations" / "class_recall.py")
class_recall = importlib.util.module_from_spec(spec)
spec.loader.exec_module(class_recall)


def test_recall_balanced_accuracy_shares_and_nll_by_hand():
    # labels 0, 0, 1, 1, 1; predictions 0, 1, 1, 1, 0 -> recall 1/2 and 2/3
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]], dtype=np.float32)
    labels = np.array([0, 0, 1, 1, 1])
    s = class_recall.class_recall(probs, labels)
    assert s["acc"] == pytest.approx(3 / 5)
    assert s["recall"] == pytest.approx([1 / 2, 2 / 3])
    assert s["balanced_acc"] == pytest.approx(7 / 12)
    assert s["pred_count"] == [2.0, 3.0] and s["true_count"] == [2.0, 3.0]
    nll = -np.log([0.9, 0.4, 0.8, 0.7, 0.4]).mean()
    assert s["nll"] == pytest.approx(nll, rel=1e-6)


def test_table_reads_the_saved_predictions_and_names_a_missing_file(tmp_path):
    run = tmp_path / "seed2" / "student"
    (run / "test").mkdir(parents=True)
    np.savez(run / "test" / "test_predictions.npz", probs=np.array([[0.8, 0.2], [0.1, 0.9]]), labels=np.array([0, 0]))
    text = class_recall.table([run])
    assert "| seed2/student | 0.500 | 0.500 / nan | 0.500 | 0.500 / 0.500 (1.000 / 0.000) |" in text
    with pytest.raises(SystemExit, match="run the model's `test` stage"):
        class_recall.table([tmp_path / "seed3" / "student"])


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match="expected probs"):
        class_recall.class_recall(np.zeros((3, 2)), np.zeros(4, dtype=int))


def test_a_val_predictions_file_gives_its_last_epoch(tmp_path):
    folder = tmp_path / "seed1" / "teacher" / "validate"
    folder.mkdir(parents=True)
    first = [[0.9, 0.1], [0.9, 0.1]]  # epoch 0: both called class 0
    last = [[0.9, 0.1], [0.2, 0.8]]  # epoch 1: both right
    np.savez(
        folder / "val_predictions.npz", epochs=np.array([0, 1]), probs=np.array([first, last]), labels=np.array([0, 1])
    )
    text = class_recall.table([folder / "val_predictions.npz"])
    assert "| seed1/teacher (val) | 1.000 | 1.000 / 1.000 | 1.000 |" in text
