"""Per-class recall of tested models, from the predictions their ``test`` stage saved (no model is run).

    python experiments/ablations/class_recall.py runs/pneumoniamnist/seed2/{teacher,student}
    python experiments/ablations/class_recall.py <validate run>/val_predictions.npz   # the val split, last epoch

For each run folder, from ``test/test_predictions.npz`` (``probs`` (N, K), ``labels``) as ``test`` wrote it, or for
a ``val_predictions.npz`` (``kr_lightning.callbacks.ValPredictions``, e.g. of a ``validate`` run on a checkpoint)
from its last epoch's probabilities: the accuracy of the argmax, the recall of every class, the balanced accuracy
(their mean), the share of images predicted as each class against its share among the labels, and the mean negative
log-likelihood. A diagnostic of where two models with the same AUC part (which class they give up), read from files
the single test read already produced (or from val); nothing here is chosen from it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from kr_lightning.callbacks.val_predictions import FILE as VAL_FILE
from kr_lightning.callbacks.val_predictions import load_val_predictions


def class_recall(probs: np.ndarray, labels: np.ndarray) -> dict[str, float | list[float]]:
    """Accuracy, per-class recall, balanced accuracy, images predicted as and labelled as each class, mean NLL."""
    if probs.ndim != 2 or len(probs) != len(labels):
        raise ValueError(f"expected probs (N, K) and labels (N,), got {probs.shape} and {labels.shape}")
    k = probs.shape[1]
    pred = probs.argmax(axis=1)
    recall = [float((pred[labels == c] == c).mean()) if (labels == c).any() else float("nan") for c in range(k)]
    picked = np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)
    return {
        "acc": float((pred == labels).mean()),
        "recall": recall,
        "balanced_acc": float(np.nanmean(recall)),
        "pred_count": np.bincount(pred, minlength=k).astype(float).tolist(),
        "true_count": np.bincount(labels, minlength=k).astype(float).tolist(),
        "nll": float(-np.log(picked).mean()),
    }


def _predictions(path: Path) -> tuple[str, np.ndarray, np.ndarray]:
    """Label, probabilities and labels of a run folder's test predictions or of a ``val_predictions.npz``."""
    if path.name == VAL_FILE:
        val = load_val_predictions(path)
        run = path.parent.parent if path.parent.name == "validate" else path.parent
        return f"{run.parent.name}/{run.name} (val)", val["probs"][-1], val["labels"]
    test = path / "test" / "test_predictions.npz"
    if not test.is_file():
        raise SystemExit(f"{test} not found: run the model's `test` stage first (it writes this file)")
    with np.load(test) as data:
        return f"{path.parent.name}/{path.name}", data["probs"], data["labels"]


def table(paths: list[Path]) -> str:
    """The markdown table of :func:`class_recall` for run folders (test) or ``val_predictions.npz`` files (val)."""
    rows = []
    for path in paths:
        label, probs, labels = _predictions(path)
        s = class_recall(probs, labels)
        n = sum(s["true_count"])
        recalls = " / ".join(f"{r:.3f}" for r in s["recall"])
        shares = " / ".join(f"{p / n:.3f}" for p in s["pred_count"])
        truth = " / ".join(f"{t / n:.3f}" for t in s["true_count"])
        rows.append(
            f"| {label} | {s['acc']:.3f} | {recalls} | {s['balanced_acc']:.3f} | {shares} ({truth}) | {s['nll']:.3f} |"
        )
    head = [
        "| run | ACC | recall by class | balanced ACC | predicted share by class (true) | NLL |",
        "|---|---|---|---|---|---|",
    ]
    return "\n".join(head + rows)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    print(table([Path(a) for a in sys.argv[1:]]))
