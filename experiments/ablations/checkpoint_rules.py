"""Judge checkpoint selection rules on val alone, by split halves, over runs fitted with ValPredictions.

    python experiments/ablations/checkpoint_rules.py RUN [RUN ...] [--splits 500] [--out rules.json]

Each RUN is a fit folder holding ``val_predictions.npz`` (fit with
``--trainer.callbacks+=kr_lightning.callbacks.ValPredictions``). For each run and rule (``acc``, the recipes'
rule; ``loss``; ``acc_loss``; ``last``): the epoch the rule keeps on the whole val split and the mean accuracy of
the rule's pick on held-out halves (:func:`kr_lightning.checkpoint_rules.split_half`, the same splits for every
rule). Then, over the runs, each rule's held-out accuracy minus ``acc``'s: mean, sd and how many runs it beats
``acc`` on. The test split is never read.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from kr_lightning import artifacts
from kr_lightning.callbacks.val_predictions import load_val_predictions
from kr_lightning.checkpoint_rules import RULES, pick_epoch, split_half


def judge(run: Path, splits: int, seed: int) -> dict[str, dict[str, float | int]]:
    """Per rule: the epoch kept on the whole val split and the mean held-out accuracy of its picks."""
    saved = load_val_predictions(run)
    probs, labels = saved["probs"], saved["labels"]
    held_out = split_half(probs, labels, RULES, n_splits=splits, rng=np.random.default_rng(seed))
    return {
        rule: {"epoch": int(saved["epochs"][pick_epoch(probs, labels, rule)]), "held_out": float(held_out[rule].mean())}
        for rule in RULES
    }


def label(run: Path) -> str:
    """``seed0/student`` for ``.../seed0/student``: runs of the same name told apart by their parent."""
    return f"{run.parent.name}/{run.name}"


def main(argv: list[str] | None = None) -> None:
    """Print the per-run table and the comparison with ``acc``; write them as JSON with ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--splits", type=int, default=500, help="random halvings of val (each used both ways)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the halvings (the same for every run)")
    parser.add_argument("--out", type=Path, default=None, help="also write every number as JSON here")
    args = parser.parse_args(argv)
    folders = {label(run): run for run in args.runs}
    if len(folders) < len(args.runs):
        raise SystemExit("two runs have the same seed<k>/<stage> label: judge each run root in its own call")
    results = {name: judge(run, args.splits, args.seed) for name, run in folders.items()}
    print("| run | " + " | ".join(f"{rule}: epoch / held-out ACC" for rule in RULES) + " |")
    print("|---|" + "---|" * len(RULES))
    for name, rules in results.items():
        cells = [f"{rules[r]['epoch']} / {rules[r]['held_out']:.3f}" for r in RULES]
        print(f"| {name} | " + " | ".join(cells) + " |")
    summary = {}
    for rule in RULES[1:]:
        gain = np.array([rules[rule]["held_out"] - rules["acc"]["held_out"] for rules in results.values()])
        sd = float(gain.std(ddof=1)) if len(gain) > 1 else 0.0
        summary[rule] = {"minus_acc_mean": float(gain.mean()), "sd": sd, "better": int((gain > 0).sum())}
        print(f"{rule} - acc, held out: {gain.mean():+.4f} ± {sd:.4f} (better on {(gain > 0).sum()} of {len(gain)})")
    if args.out is not None:
        paths = {name: str(run.resolve()) for name, run in folders.items()}  # for test_picks.py
        record = {"splits": args.splits, "seed": args.seed, "runs": results, "paths": paths, "summary": summary}
        artifacts.write_json(args.out, record)


if __name__ == "__main__":
    main()
