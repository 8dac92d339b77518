import importlib.util
import json

import pytest

from conftest import REPO

spec = importlib.util.spec_from_file_location("val_table", REPO / "experiments" / "ablations" / "val_table.py")
val_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(val_table)


def write_run(folder, accs, kept=None):
    folder.mkdir(parents=True)
    lines = ["epoch,step,train/kept,val/acc,val/auc"]
    for epoch, acc in enumerate(accs):
        lines.append(f"{epoch},{epoch * 9},{'' if kept is None else kept},,")  # a train row without val
        lines.append(f"{epoch},{epoch * 9},,{acc},{0.5 + epoch / 100}")
    (folder / "metrics.csv").write_text("\n".join(lines) + "\n")
    (folder / "run.json").write_text(json.dumps({"wall_seconds": 12.5}))


def test_val_summary_reads_best_first_epoch_its_auc_and_the_last_mean(tmp_path):
    accs = [0.5, 0.9, 0.7, 0.9] + [0.6] * 10
    write_run(tmp_path / "a", accs, kept=0.8)
    s = val_table.val_summary(tmp_path / "a")
    assert (s["epochs"], s["best_acc"], s["best_epoch"]) == (14, 0.9, 1)
    assert s["best_auc"] == pytest.approx(0.51) and s["last_mean_acc"] == pytest.approx(0.6)
    assert s["kept"] == pytest.approx(0.8) and s["wall_seconds"] == 12.5
    write_run(tmp_path / "b", [0.7, 0.8])
    text = val_table.table([tmp_path / "a", tmp_path / "b"])
    assert "| a | 14 | 0.900 (1) | 0.510 | 0.600 | - | 0.800 | 12 |" in text
    assert "| b | 2 | 0.800 (1) | 0.510 | 0.750 | - | - | 12 |" in text


def test_val_loss_lowest_and_last_and_same_named_runs_get_their_parent(tmp_path):
    for seed, losses in ((0, [0.5, 0.3, 0.9]), (1, [0.4, 0.2, 0.25])):
        run = tmp_path / f"seed{seed}" / "student"
        run.mkdir(parents=True)
        rows = [f"{e},{e},0.8,0.9,{loss}" for e, loss in enumerate(losses)]
        (run / "metrics.csv").write_text("epoch,step,val/acc,val/auc,val/loss\n" + "\n".join(rows) + "\n")
    s = val_table.val_summary(tmp_path / "seed0" / "student")
    assert (s["val_loss_min"], s["val_loss_last"]) == (0.3, 0.9)
    text = val_table.table([tmp_path / "seed0" / "student", tmp_path / "seed1" / "student"])
    assert "| seed0/student | 3 |" in text and "| 0.300 / 0.900 |" in text and "| seed1/student |" in text


def test_a_run_without_validation_says_so(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "metrics.csv").write_text("epoch,step,train/loss\n0,9,0.3\n")
    with pytest.raises(SystemExit, match="no val/acc"):
        val_table.val_summary(tmp_path / "c")
