"""Judge checkpoint rules on val, then test each rule's pick once with the run's own fit command (subprocesses)."""

import importlib.util
import json
import subprocess
import sys

from conftest import CONFIGS, REPO


def load(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "experiments" / "ablations" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_rules_picks_are_tested_once_from_the_runs_every_epoch_checkpoints(tmp_path, tiny_root, monkeypatch):
    run = tmp_path / "seed0" / "teacher"
    fit = [sys.executable, "-m", "kr_lightning", "fit", "--config", str(CONFIGS / "tiny_teacher.yaml"),
           f"--trainer.default_root_dir={run}", f"--data.root={tiny_root}", "--trainer.max_epochs=3",
           "--trainer.callbacks+=kr_lightning.callbacks.ValPredictions",
           "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
           f"--trainer.callbacks.dirpath={run / 'epochs'}", "--trainer.callbacks.filename=epoch{epoch:03d}",
           "--trainer.callbacks.save_top_k=-1", "--trainer.callbacks.auto_insert_metric_name=false"]  # fmt: skip
    done = subprocess.run(fit, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in (run / "epochs").iterdir()) == ["epoch000.ckpt", "epoch001.ckpt", "epoch002.ckpt"]
    load("checkpoint_rules").main([str(run), "--splits", "5", "--out", str(tmp_path / "rules.json")])
    picks = json.loads((tmp_path / "rules.json").read_text())["runs"]["seed0/teacher"]
    assert picks["last"]["epoch"] == 2
    monkeypatch.chdir(REPO)
    test_picks = load("test_picks")
    test_picks.main(
        [str(tmp_path / "rules.json"), "--rule", "acc", "--rule", "last", "--out", str(tmp_path / "t.json")]
    )
    tested = json.loads((tmp_path / "t.json").read_text())["test_acc"]["seed0/teacher"]
    for rule in ("acc", "last"):
        epoch = picks[rule]["epoch"]
        result = json.loads((run / f"test_epoch{epoch:03d}" / "test" / "test_metrics.json").read_text())
        assert result["ckpt_path"] == str(run / "epochs" / f"epoch{epoch:03d}.ckpt")
        assert result["metrics"]["test/acc"] == tested[rule]
    assert not (run / "test").exists()  # the run's own test folder (best.ckpt) is left alone
    stamp = (run / "test_epoch002" / "test" / "test_metrics.json").stat().st_mtime_ns
    test_picks.main([str(tmp_path / "rules.json"), "--rule", "last"])
    assert (run / "test_epoch002" / "test" / "test_metrics.json").stat().st_mtime_ns == stamp  # not tested again
