"""Val-only summary of fit runs, as a markdown table (the ablation tables of experiments/README.md).

    python experiments/ablations/val_table.py runs/breastmnist/seed0/ablations/gkd/*

For each run folder, from its own ``metrics.csv`` and ``run.json``: the best val ACC and its epoch (what
``best.ckpt`` was selected on), the val AUC of that epoch, the mean val ACC over the last 10 epochs (less noisy
than a maximum over 120 epochs on a small val split), the lowest and the last val loss when logged (a last far above
the lowest: the run overfits its training images), the mean of ``train/kept`` when logged, and the fit's wall
seconds. Runs of the same name (``seed*/student``) are labelled by their parent folder too. The test split is
never read.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path


def val_summary(run: Path, last: int = 10) -> dict[str, float | int | None]:
    """Best val ACC (first epoch reaching it), its AUC, mean val ACC of the last ``last`` epochs, kept share, wall."""
    with (run / "metrics.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    val = [r for r in rows if r.get("val/acc")]
    if not val:
        raise SystemExit(f"{run}/metrics.csv has no val/acc rows: has the run validated yet?")
    best = max(val, key=lambda r: float(r["val/acc"]))  # max keeps the first of equal values
    kept = [float(r["train/kept"]) for r in rows if r.get("train/kept")]
    record = run / "run.json"
    wall = json.loads(record.read_text()).get("wall_seconds") if record.is_file() else None
    tail = [float(r["val/acc"]) for r in val[-last:]]
    losses = [float(r["val/loss"]) for r in val if r.get("val/loss")]
    return {
        "epochs": len(val),
        "best_acc": float(best["val/acc"]),
        "best_epoch": int(float(best["epoch"])),
        "best_auc": float(best["val/auc"]),
        "last_mean_acc": sum(tail) / len(tail),
        "val_loss_min": min(losses) if losses else None,
        "val_loss_last": losses[-1] if losses else None,
        "kept": sum(kept) / len(kept) if kept else None,
        "wall_seconds": wall,
    }


def table(runs: list[Path]) -> str:
    """The markdown table of :func:`val_summary` for ``runs``."""
    lines = [
        "| run | epochs | best val ACC (epoch) | its val AUC | mean val ACC, last 10 | val loss, lowest / last "
        "| kept | wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    names = [run.name for run in runs]
    for run in runs:
        s = val_summary(run)
        label = run.name if names.count(run.name) == 1 else f"{run.parent.name}/{run.name}"
        kept = "-" if s["kept"] is None else f"{s['kept']:.3f}"
        wall = "-" if s["wall_seconds"] is None else f"{s['wall_seconds']:.0f}"
        loss = "-" if s["val_loss_min"] is None else f"{s['val_loss_min']:.3f} / {s['val_loss_last']:.3f}"
        lines.append(
            f"| {label} | {s['epochs']} | {s['best_acc']:.3f} ({s['best_epoch']}) | {s['best_auc']:.3f} | "
            f"{s['last_mean_acc']:.3f} | {loss} | {kept} | {wall} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table([Path(p) for p in sys.argv[1:]]))
