"""Test, once each, the epochs a checkpoint rule keeps (after the rule was chosen on val with checkpoint_rules.py).

    python experiments/ablations/test_picks.py rules.json --rule acc_loss [--rule acc]

``rules.json`` is ``checkpoint_rules.py --out``'s file; its runs must have been fitted with a checkpoint every
epoch in ``<run>/epochs/epochNNN.ckpt``:
``--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint --trainer.callbacks.dirpath=<run>/epochs
--trainer.callbacks.filename=epoch{epoch:03d} --trainer.callbacks.save_top_k=-1
--trainer.callbacks.auto_insert_metric_name=false``. Each pick is tested with the run's own fit command (from its
``run.json``, callbacks added on the command line left out) as ``test`` into ``<run>/test_epochNNN/``; an epoch two
rules share, or one tested before, is not tested again. Run from the repository root (the fit commands name
recipes by relative path). Prints test ACC per run and rule, with the mean ± sd over runs of the same stage.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from statistics import mean, stdev

from kr_lightning import artifacts


def test_command(run: Path, epoch: int) -> list[str]:
    """The run's fit command as a ``test`` of ``epochs/epoch<epoch>.ckpt`` into ``test_epoch<epoch>/``."""
    fit = json.loads((run / "run.json").read_text())["command"]
    if fit[1:4] != ["-m", "kr_lightning", "fit"]:
        raise SystemExit(f"{run}/run.json does not record a `kr_lightning fit` command: {' '.join(fit[:4])}")
    ckpt = run / "epochs" / f"epoch{epoch:03d}.ckpt"
    if not ckpt.is_file():
        raise SystemExit(f"{ckpt} does not exist: fit the run with a checkpoint every epoch (see this script's help)")
    args = [a for a in fit[4:] if not a.startswith("--trainer.callbacks")]
    out = run / f"test_epoch{epoch:03d}"
    return [
        sys.executable,
        "-m",
        "kr_lightning",
        "test",
        *args,
        f"--trainer.default_root_dir={out}",
        f"--ckpt_path={ckpt}",
    ]


def test_pick(run: Path, epoch: int) -> float:
    """Test ACC of the run's epoch ``epoch`` (tested now unless tested before)."""
    metrics = run / f"test_epoch{epoch:03d}" / "test" / "test_metrics.json"
    if not metrics.is_file():
        done = subprocess.run(test_command(run, epoch), capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"testing {run} epoch {epoch} failed:\n{done.stderr[-3000:]}")
    return float(json.loads(metrics.read_text())["metrics"]["test/acc"])


def main(argv: list[str] | None = None) -> None:
    """Test every rule's picks; print and (``--out``) save the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rules", type=Path, help="checkpoint_rules.py --out file")
    parser.add_argument("--rule", action="append", required=True, help="a rule whose picks to test (repeatable)")
    parser.add_argument("--out", type=Path, default=None, help="also write the test ACCs as JSON here")
    args = parser.parse_args(argv)
    judged = json.loads(args.rules.read_text())
    tested = {
        name: {rule: test_pick(Path(judged["paths"][name]), picks[rule]["epoch"]) for rule in args.rule}
        for name, picks in judged["runs"].items()
    }
    print("| run | " + " | ".join(f"{rule}: epoch / test ACC" for rule in args.rule) + " |")
    print("|---|" + "---|" * len(args.rule))
    for name, accs in tested.items():
        cells = [f"{judged['runs'][name][rule]['epoch']} / {accs[rule]:.3f}" for rule in args.rule]
        print(f"| {name} | " + " | ".join(cells) + " |")
    for stage in sorted({name.split("/", 1)[1] for name in tested}):
        for rule in args.rule:
            values = [accs[rule] for name, accs in tested.items() if name.split("/", 1)[1] == stage]
            sd = stdev(values) if len(values) > 1 else 0.0
            print(f"{stage}, {rule}: {mean(values):.3f} ± {sd:.3f} over {len(values)} runs")
    if args.out is not None:
        artifacts.write_json(args.out, {"rules": args.rule, "test_acc": tested})


if __name__ == "__main__":
    main()
