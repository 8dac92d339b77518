"""Shared fixtures: tiny MedMNIST-layout files, a tiny teacher config, environment hygiene."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "tests" / "configs"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``long`` (over a minute on CI) run first: xdist's worksteal gives each worker a contiguous share
    of the collection and lets an idle one take short tests from the end of another's; a long test collected late
    would leave one worker running it alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)  # stable: the order is kept otherwise


def make_split(n: int, size: int, channels: int, num_classes: int, rng: np.random.Generator):
    """Images whose mean brightness encodes the class (learnable in a few steps) plus noise."""
    labels = np.arange(n) % num_classes
    rng.shuffle(labels)
    base = 40 + 170 * labels / max(1, num_classes - 1)
    shape = (n, size, size) if channels == 1 else (n, size, size, channels)
    noise = rng.normal(0, 20, size=shape)
    images = np.clip(base.reshape((n,) + (1,) * (len(shape) - 1)) + noise, 0, 255).astype(np.uint8)
    return images, labels.reshape(-1, 1).astype(np.uint8)


def write_medmnist_npz(
    folder: Path,
    flag: str = "breastmnist",
    *,
    size: int = 28,
    channels: int = 1,
    num_classes: int = 2,
    n: tuple[int, int, int] = (48, 16, 16),
    seed: int = 0,
) -> Path:
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in zip(("train", "val", "test"), n, strict=True):
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = make_split(count, size, channels, num_classes, rng)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz")
    np.savez_compressed(path, **arrays)
    return path


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    """A data folder holding a tiny breastmnist.npz (48 / 16 / 16 gray 28x28 images, 2 classes)."""
    root = tmp_path / "data"
    write_medmnist_npz(root)
    return root


@pytest.fixture(autouse=True)
def _hygiene(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    dtype = torch.get_default_dtype()
    deterministic = torch.are_deterministic_algorithms_enabled()
    yield
    torch.set_default_dtype(dtype)
    torch.use_deterministic_algorithms(deterministic)
    stray = sorted(p.name for p in REPO.glob("*.yaml"))
    assert not stray, f"a test left {stray} in the repository root"


@pytest.fixture(scope="session")
def tiny_generator_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny digits generator trained for 2 epochs (checkpoints, grids, export), shared by the session."""
    from kr_lightning.cli import main

    run = tmp_path_factory.mktemp("generator") / "run"
    main(["fit", "--config", str(CONFIGS / "tiny_generator.yaml"), f"--trainer.default_root_dir={run}"])
    return run


@pytest.fixture(scope="session")
def tiny_digits_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """best.ckpt of a tiny digits teacher (1 short epoch), shared by the session."""
    from kr_lightning.cli import main

    run = tmp_path_factory.mktemp("teacher") / "run"
    main(["fit", "--config", str(CONFIGS / "tiny_digits_teacher.yaml"), f"--trainer.default_root_dir={run}"])
    return run / "checkpoints" / "best.ckpt"


def real_data_root() -> Path | None:
    """Folder with the real breastmnist.npz: $KR_DATA_ROOT, else ../shared/data beside the repo."""
    for candidate in (os.environ.get("KR_DATA_ROOT"), REPO.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "breastmnist.npz").is_file():
            return Path(candidate)
    return None


def cli_error(capsys: pytest.CaptureFixture, args: list[str]) -> str:
    """Run the CLI in process, expect the user-error exit (status 2) and return its message."""
    from kr_lightning.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2, f"expected exit status 2, got {exit_info.value.code}"
    err = capsys.readouterr().err
    assert err.count("kr_lightning: error:") == 1, f"expected one error message, got: {err[-2000:]}"
    return err[err.index("kr_lightning: error:") :]


def tiny_unet(num_classes: int, image_size: int) -> torch.nn.Module:
    """A seeded two-level UNet whose output depends visibly on the class (random class embeddings)."""
    from kr_lightning.models.unet import build_unet

    torch.manual_seed(0)
    net = build_unet(
        num_classes=num_classes,
        in_channels=1,
        image_size=image_size,
        block_out_channels=[8, 16],
        layers_per_block=1,
        attention_levels=[False, False],
        norm_num_groups=4,
        attention_head_dim=4,
        dropout=0.0,
    )
    with torch.no_grad():  # give the untrained network a non-trivial response to the class label
        net.class_embedding.weight.normal_(0, 1.0)
    return net
