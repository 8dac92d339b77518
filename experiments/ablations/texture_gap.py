"""Are the synthetic images too smooth for the classifiers? Val-only diagnostics, no training.

    python experiments/ablations/texture_gap.py --flag breastmnist --seeds runs/breastmnist/seed{0,1,2} \
        [--sets samples_dpm10.npz ...] [--noise 0.05 0.07]

Three tables, all on the real **val** split (the test split is never read):

1. Per seed folder (``teacher/``, ``student/`` with their ``best.ckpt``, ``synthetic/`` with the student's cached
   sets): the val ACC / loss of the teacher and the GKD student with their own batch-norm statistics, with the
   statistics re-estimated on one synthetic set of the student (the set file of the highest set index that holds
   as many images as the real train split), and on the real train split. A network whose val ACC collapses when
   its statistics come from the other domain sees the two domains' features differently.
2. The teacher and student of every seed on val images blurred by a Gaussian of sd 0.5 / 0.7 pixels, beside the
   high-frequency energy each blur leaves (:func:`kr_lightning.quality.high_frequency_energy`).
3. Image sets (the real train split, the first seed's synthetic set, each ``--sets`` file, and that synthetic set
   with pixel noise of each ``--noise`` sd, :func:`kr_lightning.data.augment.add_noise`): high-frequency energy,
   mean pixel, and the first seed's teacher's val ACC / loss with its batch-norm statistics from that set (the
   real train split gives the teacher's own value; the closer a set comes, the closer its features' statistics).

Files: ``*.pt`` sets of a GKD cache (``x`` in ``[-1, 1]``) or ``*.npz`` written by ``python -m kr_lightning sample``.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.transforms.functional import gaussian_blur

from kr_lightning.data.arrays import to_tensor
from kr_lightning.data.augment import add_noise
from kr_lightning.data.datamodule import ImageDataModule
from kr_lightning.distill import cache
from kr_lightning.models.loading import load_classifier
from kr_lightning.quality import high_frequency_energy
from kr_lightning.quality.command import npz_images
from kr_lightning.seeding import SAMPLING, make_rng


def with_batch_stats(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 64) -> torch.nn.Module:
    """A copy of ``model`` whose batch-norm running statistics are the plain average over ``images``."""
    model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.reset_running_stats()
            module.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            model(images[i : i + batch_size])
    return model.eval()


def val_scores(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> str:
    """``ACC / loss`` of ``model`` on ``(x, y)``."""
    with torch.no_grad():
        logits = model(x)
    return f"{(logits.argmax(1) == y).float().mean().item():.3f} / {F.cross_entropy(logits, y).item():.3f}"


def load_images(path: Path, num_classes: int) -> torch.Tensor:
    """Images in ``[-1, 1]`` from a GKD cache set (``.pt``) or a ``sample`` npz (the project's own readers)."""
    if path.suffix == ".npz":
        return npz_images(str(path), num_classes)[0]
    return cache.load(path, torch.device("cpu")).float()


def synthetic_set(seed_dir: Path, n: int, num_classes: int) -> Path:
    """The cached set of the highest set index holding ``n`` images (one file of the student's stream)."""
    files = sorted((seed_dir / "synthetic").glob("set*-rank0-*.pt"))
    files = [f for f in files if len(load_images(f, num_classes)) == n]
    if not files:
        raise SystemExit(f"{seed_dir}/synthetic holds no set of {n} images: train the seed's GKD student first")
    return files[-1]


def main() -> None:
    """Print the three tables."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flag", default="breastmnist")
    parser.add_argument("--seeds", nargs="+", type=Path, required=True, help="seed folders of a pipeline run")
    parser.add_argument("--sets", nargs="*", type=Path, default=[], help="more image sets (.pt or .npz)")
    parser.add_argument("--noise", nargs="*", type=float, default=[0.05, 0.07])
    args = parser.parse_args()

    data = ImageDataModule(flag=args.flag)
    data.setup("fit")
    train, val = data.split("train"), data.split("val")
    x_train, x_val, y_val = to_tensor(train.images), to_tensor(val.images), torch.from_numpy(val.labels)
    models = {
        s: {r: load_classifier(s / r / "checkpoints/best.ckpt") for r in ("teacher", "student")} for s in args.seeds
    }
    k = data.num_classes
    sets = {s: synthetic_set(s, len(train), k) for s in args.seeds}

    print("| seed folder | network | own statistics | statistics of a synthetic set | of the real train split |")
    print("|---|---|---|---|---|")
    for s in args.seeds:
        x_syn = load_images(sets[s], k)
        for role, model in models[s].items():
            cells = [
                val_scores(m, x_val, y_val)
                for m in (model, with_batch_stats(model, x_syn), with_batch_stats(model, x_train))
            ]
            print(f"| {s.name} | {role} | " + " | ".join(cells) + " |")

    blurs = {"none": x_val} | {f"sd {b}": gaussian_blur(x_val, [5, 5], [b, b]) for b in (0.5, 0.7)}
    print(
        "\n| val images blurred | high-frequency energy | "
        + " | ".join(f"{s.name} {r}" for s in args.seeds for r in ("teacher", "student"))
        + " |"
    )
    print("|---|---|" + "---|" * 2 * len(args.seeds))
    for name, x in blurs.items():
        cells = [val_scores(models[s][r], x, y_val) for s in args.seeds for r in ("teacher", "student")]
        print(f"| {name} | {high_frequency_energy(x):.4f} | " + " | ".join(cells) + " |")

    first = args.seeds[0]
    x_syn = load_images(sets[first], k)
    candidates = {"real train split": x_train, f"{first.name} synthetic set {sets[first].name}": x_syn}
    candidates |= {str(p): load_images(p, k) for p in args.sets}
    rng = make_rng(0, stream=SAMPLING)
    candidates |= {f"that synthetic set + noise sd {sd}": add_noise(x_syn, rng, sd) for sd in args.noise}
    teacher = models[first]["teacher"]
    head = f"{first.name} teacher, val ACC / loss with its statistics"
    print(f"\n| image set | images | high-frequency energy | mean pixel | {head} |")
    print("|---|---|---|---|---|")
    for name, x in candidates.items():
        scores = val_scores(with_batch_stats(teacher, x), x_val, y_val)
        print(f"| {name} | {len(x)} | {high_frequency_energy(x):.4f} | {x.mean().item():.3f} | {scores} |")


if __name__ == "__main__":
    main()
