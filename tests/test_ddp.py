"""``--trainer.strategy=ddp`` through the CLI: Lightning re-runs the command for rank 1 (as torchrun/SLURM would).

Two CPU processes (gloo). Every run has a timeout, so a rank stuck in a collective fails the test instead of
stalling the suite. This module is imported by the ranks themselves (``tests.test_ddp.CrashAtEpoch``), so it takes
its paths from ``__file__`` rather than from ``conftest``.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "tests" / "configs"
DDP = ("--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu")
TIMEOUT = 240
RESUMING = "kr_lightning: resuming from"


class CrashAtEpoch(Callback):
    """Raises on every rank when training epoch ``epoch`` starts (after the previous epoch's ``last.ckpt``)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("simulated crash")


def fit(config, run, *extra, ok=True):
    """``python -m kr_lightning fit`` on 2 DDP ranks; on a timeout, kill both ranks and fail."""
    args = [sys.executable, "-m", "kr_lightning", "fit", "--config", str(config), f"--trainer.default_root_dir={run}"]
    # its own session, so that a timeout kills rank 0 and the rank it launched together
    with subprocess.Popen(
        [*args, *DDP, *extra],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as proc:
        try:
            out, err = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail(f"DDP fit hung for {TIMEOUT} s:\n{out[-2000:]}\n{err[-3000:]}")
    if ok:
        assert proc.returncode == 0, f"exit status {proc.returncode}:\n{out[-2000:]}\n{err[-3000:]}"
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def finished(run):
    record = json.loads((run / "run.json").read_text())
    assert "finished" in record, record
    return record


def files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_ddp_generator(tmp_path):
    run = tmp_path / "gen"
    fit(CONFIGS / "tiny_generator.yaml", run)
    record = finished(run)
    assert (record["epochs"], record["global_step"]) == (2, 6)  # 3 batches per epoch on each rank
    assert files(run / "checkpoints") == ["gen-epoch000.ckpt", "gen-epoch001.ckpt", "last.ckpt"]
    assert files(run / "samples") == ["epoch000.png", "epoch001.png", "final.png"]
    assert (run / "export" / "model_index.json").is_file()
    rows = (run / "metrics.csv").read_text().splitlines()[1:]
    assert len(rows) == len(set(rows)), "metrics logged by both ranks"


def test_ddp_teacher_overwrites_crashes_and_resumes(tmp_path):
    run, config = tmp_path / "teacher", CONFIGS / "tiny_digits_teacher.yaml"
    (run / "checkpoints").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"stage": "fit", "finished": "2020-01-01T00:00:00+00:00"}))
    (run / "checkpoints" / "last.ckpt").write_bytes(b"not a checkpoint: a rank that resumes from it fails")
    crash = ("--trainer.callbacks+=tests.test_ddp.CrashAtEpoch", "--trainer.callbacks.epoch=1")

    crashed = fit(config, run, "--trainer.max_epochs=2", "--overwrite=true", *crash, ok=False)
    assert crashed.returncode != 0 and "simulated crash" in crashed.stderr, crashed.stderr[-3000:]
    assert crashed.stdout.count("deleted the finished run") == 1 and RESUMING not in crashed.stdout
    assert "finished" not in json.loads((run / "run.json").read_text())
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0

    resumed = fit(config, run, "--trainer.max_epochs=2")
    assert resumed.stdout.count(RESUMING) == 2, resumed.stdout  # rank 0, then rank 1 re-running the command
    record = finished(run)
    assert record["resumed_from"] == str(run / "checkpoints" / "last.ckpt") and record["sessions"] == 2
    assert (record["epochs"], record["global_step"]) == (2, 8)  # 4 batches per epoch on each rank
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (1, 8)
    assert files(run / "checkpoints") == ["best.ckpt", "last.ckpt"]
    epochs = [row.split(",")[0] for row in (run / "metrics.csv").read_text().splitlines()[1:]]
    assert epochs == ["0", "0", "1", "1"]  # one val and one train row per epoch: logged by rank 0 only


def test_overwrite_is_done_by_rank_0_and_stops_every_rank_resuming(tmp_path, monkeypatch):
    """Launchers that start every rank at once (torchrun, SLURM): rank 1 may look before rank 0 has deleted."""
    from lightning.pytorch.utilities import rank_zero_only

    from kr_lightning.stages import _guard_finished_run

    (tmp_path / "run.json").write_text(json.dumps({"finished": "2020-01-01T00:00:00+00:00"}))
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    assert _guard_finished_run(tmp_path, overwrite=True) and (tmp_path / "run.json").is_file()
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    assert _guard_finished_run(tmp_path, overwrite=True) and not tmp_path.exists()
    assert not _guard_finished_run(tmp_path, overwrite=True)


def test_ddp_student_ranks_draw_different_shards(tmp_path, tiny_generator_run, tiny_digits_teacher):
    run, cache = tmp_path / "student", tmp_path / "cache"
    fit(
        CONFIGS / "tiny_student.yaml",
        run,
        f"--data.generator={tiny_generator_run / 'export'}",
        f"--data.teacher_ckpt={tiny_digits_teacher}",
        f"--data.cache_dir={cache}",
    )
    record = finished(run)
    assert (record["epochs"], record["global_step"]) == (2, 2)  # one batch of 10 synthetic images per rank
    assert files(run / "checkpoints") == ["best.ckpt", "last.ckpt"]
    sets = {p.name.split("-")[0] + "-" + p.name.split("-")[1]: p for p in cache.glob("*.pt")}
    assert sorted(sets) == ["set0000-rank0", "set0000-rank1", "set0001-rank0", "set0001-rank1"]
    for index in ("set0000", "set0001"):
        x0, x1 = (torch.load(sets[f"{index}-rank{r}"], weights_only=True)["x"] for r in (0, 1))
        assert len(x0) == len(x1) == 10
        assert not {x.numpy().tobytes() for x in x0} & {x.numpy().tobytes() for x in x1}
