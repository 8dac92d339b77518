"""DP-SGD teacher (Opacus): Poisson batches, the privacy spent, GroupNorm, checkpoints, and its bad inputs."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from opacus.optimizers import DPOptimizer
from torch import nn

from conftest import CONFIGS, cli_error
from kr_lightning.data.datamodule import ImageDataModule
from kr_lightning.data.poisson import poisson_loader
from kr_lightning.models.dp_teacher import DPTeacher
from kr_lightning.models.loading import load_classifier

DP = [
    "--model=kr_lightning.models.DPTeacher",
    "--model.init_args.net=kr_lightning.models.SmallCNN",
    "--model.init_args.net.init_args.width=8",
    "--data.init_args.sampling=poisson",
]


def dp_args(root: Path, run: Path, *extra: str) -> list[str]:
    return [
        "--config",
        str(CONFIGS / "tiny_teacher.yaml"),
        *DP,
        f"--data.init_args.root={root}",
        f"--trainer.default_root_dir={run}",
        *extra,
    ]


def last_row(run: Path, key: str) -> float:
    with open(run / "metrics.csv") as f:
        values = [row[key] for row in csv.DictReader(f) if row.get(key)]
    return float(values[-1])


def test_poisson_loader_batches():
    """1 / q batches an epoch, each image in a batch with probability q; set_epoch fixes the draws."""
    data = torch.utils.data.TensorDataset(torch.randn(500, 1, 4, 4), torch.arange(500))
    loader = poisson_loader(data, batch_size=50, seed=3)
    assert len(loader) == 10 and loader.batch_sampler.sample_rate == pytest.approx(0.1)

    def epoch(k: int) -> list[list[int]]:
        loader.batch_sampler.set_epoch(k)
        return [batch[1].tolist() for batch in loader]

    first, again, other = epoch(0), epoch(0), epoch(1)
    assert first == again and first != other
    sizes = [len(b) for k in range(20) for b in epoch(k)]
    assert abs(sum(sizes) / len(sizes) - 50) < 3  # mean of 200 Binomial(500, 0.1) batches: sd 0.5
    assert len({len(b) for b in first}) > 1  # not fixed-size batches
    assert all(len(set(b)) == len(b) for b in first)


def test_dp_teacher_spends_its_epsilon(tmp_path, tiny_root):
    """After the planned steps the accountant reports the target epsilon; the model uses GroupNorm, loads back."""
    from kr_lightning.cli import main

    run = tmp_path / "dp"
    main(["fit", *dp_args(tiny_root, run, "--model.init_args.epsilon=4.0", "--trainer.max_epochs=3")])
    spent = last_row(run, "dp/epsilon")
    assert 3.9 < spent <= 4.0 + 1e-3, spent
    assert last_row(run, "dp/noise_multiplier") > 0.3
    model = load_classifier(run / "checkpoints" / "last.ckpt")
    assert isinstance(model, DPTeacher)
    kinds = {type(m) for m in model.net.modules()}
    assert nn.GroupNorm in kinds and not any(issubclass(k, nn.modules.batchnorm._BatchNorm) for k in kinds)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 2)
    history = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["dp"]["accountant"]["history"]
    steps = sum(h[2] for h in history)
    assert steps == 3 * math.ceil(48 / 16)  # every noisy step accounted (48 images, batches of 16 expected)


def test_dp_optimizer_clips_and_noises(tiny_root):
    """The optimizer training uses is Opacus' DPOptimizer with the configured clipping norm."""
    import lightning as L

    data = ImageDataModule(flag="breastmnist", root=str(tiny_root), batch_size=16, sampling="poisson")
    model = DPTeacher(max_grad_norm=0.5, epsilon=2.0)
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(model, datamodule=data)
    optimizer = trainer.optimizers[0]
    assert isinstance(optimizer, DPOptimizer) and optimizer.max_grad_norm == 0.5
    assert optimizer.noise_multiplier == pytest.approx(model.noise_multiplier) and model.noise_multiplier > 0


def test_dp_teacher_needs_poisson_batches(tmp_path, tiny_root, capsys):
    args = dp_args(tiny_root, tmp_path / "dp", "--data.init_args.sampling=shuffle")
    assert "sampling: poisson" in cli_error(capsys, ["fit", *args])


def test_dp_teacher_refuses_epsilon_zero(tmp_path, tiny_root, capsys):
    err = cli_error(capsys, ["fit", *dp_args(tiny_root, tmp_path / "dp", "--model.init_args.epsilon=0")])
    assert "epsilon must be > 0" in err
    assert not (tmp_path / "dp").exists()


def test_dp_teacher_refuses_delta_of_one_over_n(tmp_path, tiny_root, capsys):
    err = cli_error(capsys, ["fit", *dp_args(tiny_root, tmp_path / "dp", f"--model.init_args.delta={1 / 48}")])
    assert "below 1 / N" in err and "48 training images" in err
