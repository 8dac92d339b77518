"""A grid of real training images, one row per class, to set beside the generator's sample grid.

python experiments/figures/real_grid.py --flag breastmnist --per_class 10 --out experiments/figures/breastmnist_real.png
"""

from __future__ import annotations

import argparse

import torch

from kr_lightning.data import ImageDataModule
from kr_lightning.data.arrays import to_tensor
from kr_lightning.grids import class_rows, save_grid


def main() -> None:
    """Parse the flags, load the train split, write the grid."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flag", default="breastmnist")
    parser.add_argument("--per_class", type=int, default=10)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    data = ImageDataModule(flag=args.flag)
    data.prepare_data()
    data.setup("fit")
    train = data.split("train")
    labels = torch.as_tensor(train.labels)
    save_grid(
        args.out, class_rows(to_tensor(train.images), labels, args.per_class, data.info.num_classes), args.per_class
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
