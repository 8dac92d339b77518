import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from conftest import CONFIGS, REPO, cli_error
from kr_lightning.cli import main


def fit_teacher(root, data_root, *extra):
    main(
        [
            "fit",
            "--config",
            str(CONFIGS / "tiny_teacher.yaml"),
            f"--trainer.default_root_dir={root}",
            f"--data.root={data_root}",
            *extra,
        ]
    )


def test_fit_writes_the_run_folder(tmp_path, tiny_root):
    run = tmp_path / "run"
    fit_teacher(run, tiny_root)
    for name in ("config.yaml", "run.json", "metrics.csv", "checkpoints/best.ckpt", "checkpoints/last.ckpt"):
        assert (run / name).is_file(), name
    record = json.loads((run / "run.json").read_text())
    assert record["seed"] == 0 and record["packages"]["lightning"]
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/loss", "val/acc", "val/auc", "val/loss", "val/acc_best"} <= set(header)
    assert record["dataset"] == "breastmnist"


def test_a_runs_saved_config_runs_again(tmp_path, tiny_root):
    """``config.yaml`` holds the filled-in layout; running a stage from it adds no callback twice."""
    run = tmp_path / "run"
    fit_teacher(run, tiny_root, "--trainer.max_epochs=1")
    callbacks = [cb["class_path"] for cb in yaml.safe_load((run / "config.yaml").read_text())["trainer"]["callbacks"]]
    assert callbacks.count("kr_lightning.callbacks.BestMetric") == 1
    main(["test", "--config", str(run / "config.yaml")])
    assert (run / "test" / "test_metrics.json").is_file()


def test_checkpoint_rebuilds_itself(tmp_path, tiny_root):
    fit_teacher(tmp_path / "run", tiny_root)
    import lightning as L

    import kr_lightning.models  # noqa: F401  (load_from_checkpoint only resolves imported classes)

    model = L.LightningModule.load_from_checkpoint(tmp_path / "run" / "checkpoints" / "best.ckpt")
    assert type(model).__name__ == "Teacher"
    assert model.hparams.num_classes == 2 and model(torch.zeros(3, 1, 28, 28)).shape == (3, 2)


def test_links_classes_and_channels_from_data(tmp_path):
    from conftest import write_medmnist_npz

    write_medmnist_npz(tmp_path, "dermamnist", channels=3, num_classes=7)
    run = tmp_path / "run"
    fit_teacher(run, tmp_path, "--data.flag=dermamnist", "--trainer.max_epochs=1")
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["num_classes"] == 7
    assert ckpt["hyper_parameters"]["in_channels"] == 3


def test_test_writes_metrics_and_predictions(tmp_path, tiny_root):
    run = tmp_path / "run"
    fit_teacher(run, tiny_root)
    main(
        [
            "test",
            "--config",
            str(CONFIGS / "tiny_teacher.yaml"),
            f"--trainer.default_root_dir={run}",
            f"--data.root={tiny_root}",
        ]
    )
    result = json.loads((run / "test" / "test_metrics.json").read_text())
    assert result["ckpt_path"].endswith("best.ckpt")
    assert set(result["metrics"]) >= {"test/acc", "test/auc"}
    with np.load(run / "test" / "test_predictions.npz") as pred:
        probs, labels = pred["probs"], pred["labels"]
    assert probs.shape == (16, 2) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert result["metrics"]["test/acc"] == pytest.approx((probs.argmax(1) == labels).mean(), abs=1e-6)
    assert (run / "metrics.csv").is_file(), "test must not delete the fit logs"


def test_test_without_a_trained_run_explains(tmp_path, tiny_root, capsys):
    args = [
        "test",
        "--config",
        str(CONFIGS / "tiny_teacher.yaml"),
        f"--trainer.default_root_dir={tmp_path}",
        f"--data.root={tiny_root}",
    ]
    assert re.search("no checkpoint to test.*Run `fit`", cli_error(capsys, args))


def test_rerun_resumes_from_last_and_keeps_logs(tmp_path, tiny_root, capsys):
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated kill"):
        fit_teacher(run, tiny_root, "--trainer.callbacks+=test_gkd.StopAt", "--trainer.callbacks.epoch=1")
    assert "finished" not in json.loads((run / "run.json").read_text())
    fit_teacher(run, tiny_root)
    assert "resuming from" in capsys.readouterr().out
    epochs = {line.split(",")[0] for line in (run / "metrics.csv").read_text().splitlines()[1:]}
    assert epochs == {"0", "1"}
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1


def test_module_help_in_subprocess():
    out = subprocess.run(
        [sys.executable, "-m", "kr_lightning", "--help"], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert out.returncode == 0, out.stderr
    commands = ["fit", "validate", "test", "predict", "sample", "quality", "select", "mia", "report", "records"]
    commands.append("pipeline")
    listed = {line.split()[0]: line for line in out.stdout.splitlines() if line.startswith("  ")}
    assert list(listed) == commands
    assert all(len(line.split()) > 3 for line in listed.values())  # each with a one-line description


def test_deterministic_switch_gives_bit_identical_runs(tmp_path, tiny_root):
    for name in ("a", "b"):
        fit_teacher(tmp_path / name, tiny_root, "--trainer.deterministic=true")
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoints_load_with_weights_only(tmp_path, tiny_root):
    fit_teacher(tmp_path / "run", tiny_root)
    for name in ("best.ckpt", "last.ckpt"):
        ckpt = torch.load(tmp_path / "run" / "checkpoints" / name, weights_only=True)
        assert ckpt["hyper_parameters"]["_class_path"] == "kr_lightning.models.Teacher"


def test_a_listed_last_checkpoint_is_placed_in_the_run_and_not_added_twice(tmp_path, tiny_root):
    run = tmp_path / "run"
    fit_teacher(
        run,
        tiny_root,
        "--trainer.callbacks+=kr_lightning.callbacks.LastCheckpoint",
        "--trainer.callbacks.min_interval_s=3600",
    )
    config = yaml.safe_load((run / "config.yaml").read_text())
    listed = [c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("LastCheckpoint")]
    assert len(listed) == 1 and listed[0]["init_args"]["min_interval_s"] == 3600
    assert listed[0]["init_args"]["dirpath"] == str(run / "checkpoints")
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1  # the final epoch


def test_val_predictions_match_the_logged_val_metrics_and_survive_a_resume(tmp_path, tiny_root):
    """Every epoch's saved val probabilities give the val/acc and val/loss the run logged; a resumed run appends."""
    from kr_lightning.callbacks.val_predictions import load_val_predictions

    run = tmp_path / "run"
    keep = ("--trainer.callbacks+=kr_lightning.callbacks.ValPredictions", "--trainer.max_epochs=3")
    with pytest.raises(RuntimeError, match="simulated kill"):
        fit_teacher(run, tiny_root, *keep, "--trainer.callbacks+=test_gkd.StopAt", "--trainer.callbacks.epoch=2")
    before = load_val_predictions(run)
    assert before["epochs"].tolist() == [0, 1]
    fit_teacher(run, tiny_root, *keep)
    saved = load_val_predictions(run)
    assert saved["epochs"].tolist() == [0, 1, 2] and saved["probs"].shape == (3, 16, 2)
    np.testing.assert_array_equal(saved["probs"][:2], before["probs"])
    np.testing.assert_allclose(saved["probs"].sum(-1), 1.0, atol=1e-5)
    rows = [line.split(",") for line in (run / "metrics.csv").read_text().splitlines()]
    header, val = rows[0], [r for r in rows[1:] if r[rows[0].index("val/acc")]]
    logged = {int(r[header.index("epoch")]): r for r in val}
    for epoch, probs in zip(saved["epochs"], saved["probs"], strict=True):
        labels = saved["labels"]
        assert float(logged[epoch][header.index("val/acc")]) == pytest.approx((probs.argmax(-1) == labels).mean())
        loss = -np.log(probs[np.arange(len(labels)), labels]).mean()
        assert float(logged[epoch][header.index("val/loss")]) == pytest.approx(loss, abs=1e-4)


@pytest.mark.parametrize("rule", ["acc_loss", "acc"])
def test_the_recipes_keep_the_acc_loss_epoch_and_the_old_rule_overlay_the_first_maximum(tmp_path, tiny_root, rule):
    """The recipes' callbacks: ``TieBreak`` logs val/acc_loss, ``best.ckpt`` is the ``acc_loss`` rule's epoch and
    val/acc_best is still logged; ``select_first_acc`` restores the first epoch at the highest val ACC."""
    import yaml

    from kr_lightning.callbacks.tie_break import tie_broken
    from kr_lightning.callbacks.val_predictions import load_val_predictions
    from kr_lightning.checkpoint_rules import pick_epoch

    run = tmp_path / "run"
    if rule == "acc_loss":  # the CPU teacher recipe's callbacks on the tiny teacher config
        recipe = yaml.safe_load((REPO / "experiments" / "recipes" / "cpu" / "teacher.yaml").read_text())
        overlay = tmp_path / "callbacks.yaml"
        overlay.write_text(yaml.safe_dump({"trainer": {"callbacks": recipe["trainer"]["callbacks"]}}))
    else:
        overlay = REPO / "experiments" / "overlays" / "select_first_acc" / "teacher.yaml"
    extra = ("--trainer.max_epochs=4", "--model.init_args.lr=3e-3", "--config", str(overlay))
    fit_teacher(run, tiny_root, *extra, "--trainer.callbacks+=kr_lightning.callbacks.ValPredictions")
    rows = [line.split(",") for line in (run / "metrics.csv").read_text().splitlines()]
    val = [dict(zip(rows[0], r, strict=True)) for r in rows[1:] if r[rows[0].index("val/acc")]]
    assert len(val) == 4 and "val/acc_best" in rows[0]
    if rule == "acc_loss":
        assert "val/acc_loss_best" in rows[0]  # the CLI's BestMetric follows the checkpoint's monitor
        for row in val:
            expected = tie_broken(float(row["val/acc"]), float(row["val/loss"]), 16)
            assert float(row["val/acc_loss"]) == pytest.approx(expected, abs=1e-6)
    else:
        assert "val/acc_loss" not in rows[0]
    saved = load_val_predictions(run)
    kept = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)["epoch"]
    assert kept == saved["epochs"][pick_epoch(saved["probs"], saved["labels"], rule)]
    first_max = saved["epochs"][pick_epoch(saved["probs"], saved["labels"], "acc")]
    assert first_max < saved["epochs"][pick_epoch(saved["probs"], saved["labels"], "acc_loss")]  # val ACC ties here
