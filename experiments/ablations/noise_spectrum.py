"""Which pixel noise would give the synthetic images the texture they lack? Val-only diagnostic, no training.

    python experiments/ablations/noise_spectrum.py --flag breastmnist --seeds runs/breastmnist/seed{0,1,2} \
        [--sets-per-seed 4] [--grains 0 0.5 0.6 0.7 0.8]

The radial power spectrum (per image, mean removed, ``|FFT|^2`` averaged over images, in 10 rings of spatial
frequency up to 0.71 cycles per pixel) of the real **val** split and of the GKD student's cached synthetic sets
(the files of set index < ``--sets-per-seed`` in each seed folder's ``synthetic/``), their difference (the power
the synthetic images lack), and, for each ``--grains`` correlation length, the pixel noise of
:func:`kr_lightning.data.augment.add_noise` whose spectrum fits that deficit best over the texture rings
(0.14-0.57 cycles per pixel): its pixel sd (least squares on the relative error) and the relative rms misfit.
The test split is never read.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from kr_lightning.data.arrays import to_tensor
from kr_lightning.data.augment import add_noise
from kr_lightning.data.datamodule import ImageDataModule
from kr_lightning.distill import cache
from kr_lightning.seeding import SAMPLING, make_rng

EDGES = torch.linspace(0, 0.71, 11)
TEXTURE = slice(2, 8)  # rings 0.14-0.57 cycles per pixel: above the images' layout, below the pixel corners


def radial_power(x: torch.Tensor) -> torch.Tensor:
    """Mean power of ``(N, 1, H, W)`` images in each ring of ``EDGES`` (per image, its mean removed)."""
    x = x[:, 0].double()
    power = torch.fft.fft2(x - x.mean(dim=(1, 2), keepdim=True)).abs().square().mean(0)
    fy, fx = torch.fft.fftfreq(x.shape[1]), torch.fft.fftfreq(x.shape[2])
    radius = (fy[:, None] ** 2 + fx[None, :] ** 2).sqrt()
    rings = [(radius >= lo) & (radius < hi) for lo, hi in zip(EDGES[:-1], EDGES[1:], strict=True)]
    return torch.stack([power[ring].mean() for ring in rings])


def fit(deficit: torch.Tensor, unit: torch.Tensor) -> tuple[float, float]:
    """The pixel sd whose noise spectrum ``sd^2 * unit`` best fits ``deficit`` on the texture rings.

    Least squares on the relative error; returns the sd and the relative rms misfit there.
    """
    d, u = deficit[TEXTURE], unit[TEXTURE]
    scale = ((u / d) @ torch.ones_like(d)) / ((u / d) @ (u / d))
    misfit = ((scale * u - d) / d).square().mean().sqrt()
    return float(scale.clamp(min=0).sqrt()), float(misfit)


def main() -> None:
    """Print the spectra and the fits."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flag", default="breastmnist")
    parser.add_argument("--seeds", nargs="+", type=Path, required=True, help="seed folders of a pipeline run")
    parser.add_argument("--sets-per-seed", type=int, default=4)
    parser.add_argument("--grains", nargs="*", type=float, default=[0.0, 0.5, 0.6, 0.7, 0.8])
    args = parser.parse_args()

    data = ImageDataModule(flag=args.flag)
    data.setup("fit")
    val = to_tensor(data.split("val").images)
    files = [
        f
        for s in args.seeds
        for f in sorted((s / "synthetic").glob("set*-rank0-*.pt"))
        if int(f.name[3:7]) < args.sets_per_seed
    ]
    if not files:
        raise SystemExit("no cached synthetic sets in the seed folders: train their GKD students first")
    synthetic = torch.cat([cache.load(f, torch.device("cpu")).float() for f in files])
    real, fake = radial_power(val), radial_power(synthetic)
    deficit = real - fake

    centres = (EDGES[:-1] + EDGES[1:]) / 2
    print(f"{len(val)} val images, {len(synthetic)} synthetic images from {len(files)} cached sets\n")
    print("| ring (cycles/px) | " + " | ".join(f"{c:.2f}" for c in centres) + " |")
    print("|---|" + "---|" * len(centres))
    for name, row in (("real val", real), ("synthetic", fake), ("deficit", deficit), ("synthetic / val", fake / real)):
        print(f"| {name} | " + " | ".join(f"{v:.2f}" for v in row) + " |")

    print("\n| noise grain (px) | fitted pixel sd | relative rms misfit, rings 0.14-0.57 |")
    print("|---|---|---|")
    zeros = torch.zeros(4096, *val.shape[1:])
    for grain in args.grains:
        noise = add_noise(zeros, make_rng(0, stream=SAMPLING), 0.1, grain) / 0.1  # unit sd, never clipped at 10 sd
        sd, misfit = fit(deficit, radial_power(noise))
        print(f"| {grain} | {sd:.3f} | {misfit:.2f} |")


if __name__ == "__main__":
    main()
