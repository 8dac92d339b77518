"""The figure ``select`` writes: val CAS (and class fidelity) per checkpoint and per sampling setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kr_lightning import artifacts


def interval_label(result: dict[str, Any]) -> str:
    """A label line ``σ∈(lo, hi]`` for a candidate guided on an interval, else nothing."""
    interval = result.get("guidance_interval")
    return "" if interval is None else f"\nσ∈({interval[0]:g}, {interval[1]:g}]"


def plot_selection(path: Path, checkpoints: list[dict[str, Any]], knobs: list[dict[str, Any]]) -> None:
    """Val CAS (and the teacher's class fidelity, when scored) per checkpoint epoch (left), per setting (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8), constrained_layout=True)
    xs = [r["epoch"] if r["epoch"] is not None else i for i, r in enumerate(checkpoints)]
    left.plot(xs, [r["val_acc"] for r in checkpoints], "o-", label="val acc")
    left.plot(xs, [r["val_auc"] for r in checkpoints], "s--", label="val auc")
    if all(r.get("quality") for r in checkpoints):
        left.plot(xs, [r["quality"]["fidelity"] for r in checkpoints], "^:", label="class fidelity")
    left.set(xlabel="generator epoch", ylabel="score", title="checkpoint optimisation")
    left.legend()
    labels = [f"{r['sampler']}\n{r['steps']} st, w={r['guidance']:g}{interval_label(r)}" for r in knobs]
    right.bar(range(len(knobs)), [r["val_acc"] for r in knobs], label="val acc")
    if all(r.get("quality") for r in knobs):
        right.plot(range(len(knobs)), [r["quality"]["fidelity"] for r in knobs], "k^", label="class fidelity")
        right.legend(fontsize=7)
    right.set_xticks(range(len(knobs)), labels, rotation=90, fontsize=7)
    right.set(ylabel="score", title="sampling tuning")
    low = min([r["val_acc"] for r in checkpoints + knobs] + [1.0])
    right.set_ylim(max(0.0, low - 0.05), 1.0)
    artifacts.save_figure(path, fig, dpi=120)
    plt.close(fig)
