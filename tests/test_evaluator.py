"""Our torchmetrics figures equal medmnist.Evaluator's on the same predictions."""

import numpy as np
import pytest
import torch
from medmnist import Evaluator
from torchmetrics import MetricCollection

from conftest import write_medmnist_npz
from kr_lightning.models import Teacher


@pytest.mark.parametrize(("flag", "num_classes", "channels"), [("breastmnist", 2, 1), ("bloodmnist", 8, 3)])
def test_acc_auc_match_medmnist_evaluator(tmp_path, flag, num_classes, channels):
    write_medmnist_npz(tmp_path, flag, channels=channels, num_classes=num_classes, n=(8, 8, 200))
    labels = np.load(tmp_path / f"{flag}.npz")["test_labels"].reshape(-1)
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, num_classes)) + 1.5 * np.eye(num_classes)[labels] * rng.random((200, 1))
    probs = torch.tensor(logits).softmax(-1).float()

    module = Teacher(num_classes=num_classes, in_channels=channels)
    metrics: MetricCollection = module.test_metrics
    metrics.update(probs, torch.tensor(labels))
    ours = {k: v.item() for k, v in metrics.compute().items()}

    reference = Evaluator(flag, "test", root=str(tmp_path)).evaluate(probs.numpy())
    assert ours["test/acc"] == pytest.approx(reference.ACC, abs=1e-6)
    assert ours["test/auc"] == pytest.approx(reference.AUC, abs=1e-5)
    assert 0.2 < ours["test/acc"] < 0.95  # a non-trivial case
