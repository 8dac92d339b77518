"""Figures of the privacy audit: log-log ROC curves and the most exposed training images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kr_lightning import artifacts
from kr_lightning.privacy.metrics import roc_curve


def roc_figure(path: str | Path, title: str, curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """Log-log ROC (as in Carlini et al. 2022): one curve per ``label -> (scores, is_member)``, plus chance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 4.2), constrained_layout=True)
    floor = 1.0
    for label, (scores, is_member) in curves.items():
        fpr, tpr = roc_curve(scores, is_member)
        negatives = int((~is_member).sum())
        floor = min(floor, 1.0 / max(1, negatives))
        ax.plot(np.maximum(fpr, 1e-5), np.maximum(tpr, 1e-5), label=f"{label} (neg {negatives})")
    ax.plot([1e-5, 1], [1e-5, 1], "k:", lw=0.8, label="chance")
    ax.set(
        xscale="log", yscale="log", xlim=(floor / 2, 1), ylim=(floor / 2, 1), xlabel="FPR", ylabel="TPR", title=title
    )
    ax.legend(fontsize=7)
    path = artifacts.save_figure(path, fig, dpi=120)
    plt.close(fig)
    return path
