"""Sampling cost vs synthetic quality: seconds per GKD set and per 1,000 images against every quality metric.

Each setting of ``--settings`` (a YAML list: sampler, steps, guidance, optional guidance_interval, optional
``bf16``, optional ``generator``: another generator than ``--generator``, e.g. a few-step one, named by ``label``,
optional ``batch``: its own generation batch) draws with the GKD data module's generation speed-ups (batches of
``--batch``, channels-last, compiled UNet). Every setting is built and warmed up first, then one GKD-sized set
(``|train|`` images, class-balanced) is timed per setting in ``--rounds`` interleaved rounds, so that drifts of the
machine's speed hit every setting alike; the cost ratio to the first setting (the baseline) is the median of the
per-round ratios. Quality: 1,000 class-balanced images per setting (the ``quality`` command's noise), scored in the
teacher's feature space (:mod:`kr_lightning.quality`), and the first setting again on ``--spread-seeds`` other noise
seeds (its seed-to-seed spread); with ``--cas-seeds`` also the select stage's val CAS. Only train and val are read.

    python benchmarks/sampling_frontier.py --generator <gen.ckpt> --teacher <best.ckpt> --dataset breastmnist \
        --settings experiments/ablations/sampling/frontier.yaml --out runs/ablations/frontier
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from kr_lightning import artifacts
from kr_lightning.data.datamodule import ImageDataModule
from kr_lightning.distill.candidates import Candidate, QuickStudent, score_candidate
from kr_lightning.distill.synthesis import balanced_labels, set_size, synthesize
from kr_lightning.models.loading import load_generator
from kr_lightning.models.networks import SmallCNN
from kr_lightning.models.sampling import check_interval, knobs_name, make_scheduler, noise_levels, unet_rows
from kr_lightning.models.sampling import guided_steps as guided_mask
from kr_lightning.quality.scorer import QualityScorer
from kr_lightning.seeding import GENERATION, QUALITY, make_rng

METRICS = ("fidelity", "precision", "recall", "density", "coverage", "fd")


def read_settings(path: str) -> list[dict[str, Any]]:
    """The settings list; each gets a ``name`` and its ``guidance_interval`` as a tuple (or ``None``)."""
    settings = yaml.safe_load(Path(path).read_text())["settings"]
    for s in settings:
        s["guidance_interval"] = None if s.get("guidance_interval") is None else check_interval(s["guidance_interval"])
        s.setdefault("bf16", False)
        s.setdefault("generator", None)
        s.setdefault("batch", None)
        s["name"] = knobs_name(s["sampler"], s["steps"], s["guidance"], s["guidance_interval"])
        s["name"] += "-bf16" if s["bf16"] else ""
        s["name"] += "" if s["batch"] is None else f"-b{s['batch']}"
        if s["generator"] is not None:
            s["name"] += f"-{s.get('label') or Path(s['generator']).parent.name}"
    return settings


def guided_count(pipe: Any, setting: dict[str, Any]) -> int:  # noqa: ANN401 - a ClassConditionalPipeline
    """How many of the setting's steps apply guidance (two UNet rows each)."""
    if setting["guidance"] == 1.0:
        return 0
    scheduler = make_scheduler(pipe.scheduler.config, setting["sampler"])
    scheduler.set_timesteps(setting["steps"])
    return sum(guided_mask(noise_levels(scheduler), setting["guidance_interval"]))


def drawer(pipe: Any, setting: dict[str, Any], batch: int):  # noqa: ANN201, ANN401 - a closure over a pipeline
    """``draw(labels, rng)`` with the setting's knobs on its (float32 or bf16) pipeline."""
    knobs = {k: setting[k] for k in ("steps", "guidance", "sampler", "guidance_interval")}

    def draw(labels: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        return synthesize(pipe, labels, rng, batch_size=batch, **knobs).cpu()

    return draw


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", required=True)
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--dataset", default="breastmnist")
    parser.add_argument("--settings", default="experiments/ablations/sampling/frontier.yaml")
    parser.add_argument("--out", required=True, help="folder for frontier.jsonl and frontier.png")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n-quality", type=int, default=1000)
    parser.add_argument("--spread-seeds", type=int, default=2, help="extra noise seeds of the baseline's quality")
    parser.add_argument("--cas-seeds", type=int, default=0, help="quick students per setting (0: no val CAS)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-compile", action="store_true", help="eager UNet (GKD compiles it by default)")
    args = parser.parse_args(argv)

    settings = read_settings(args.settings)
    data = ImageDataModule(flag=args.dataset)
    data.setup("fit")
    for s in settings:
        s["generator"] = s["generator"] or args.generator
    bases = {path: load_generator(path) for path in {s["generator"] for s in settings}}
    speedups = {"channels_last": True, "compile": not args.no_compile}
    pipes = {
        (path, bf16): copy.deepcopy(bases[path]).optimize(**speedups, bf16=bf16)
        for path, bf16 in {(s["generator"], s["bf16"]) for s in settings}
    }
    n_set = set_size(1.0, len(data.split("train").labels))
    set_labels = balanced_labels(data.num_classes, n_set)
    draws = {s["name"]: drawer(pipes[s["generator"], s["bf16"]], s, s["batch"] or args.batch) for s in settings}
    warmup = {}
    for s in settings:  # compile every batch shape once (guided and plain steps differ)
        name, draw, batch = s["name"], draws[s["name"]], s["batch"] or args.batch
        shapes = set_labels[: batch + n_set % batch]  # a full batch and the last, smaller one
        start = time.perf_counter()
        draw(shapes, make_rng(args.seed, 99, stream=GENERATION))
        warmup[name] = time.perf_counter() - start
        print(f"frontier: {name} warmed up in {warmup[name]:.1f} s", file=sys.stderr, flush=True)
    seconds: dict[str, list[float]] = {name: [] for name in draws}
    for r in range(args.rounds):
        for name, draw in draws.items():
            start = time.perf_counter()
            draw(set_labels, make_rng(args.seed, r, stream=GENERATION))
            seconds[name].append(time.perf_counter() - start)
        print(f"frontier: timing round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    baseline = settings[0]["name"]
    scorer = QualityScorer.from_data(data, args.teacher, seed=args.seed)
    quality_labels = balanced_labels(data.num_classes, args.n_quality)
    out = Path(args.out)
    rows = []
    for s in settings:
        name = s["name"]
        draw = draws[name]
        quality = scorer.score(draw(quality_labels, make_rng(args.seed, stream=QUALITY)), quality_labels)
        ratios = [b / t for b, t in zip(seconds[baseline], seconds[name], strict=True)]
        row = {"setting": name, **{k: s[k] for k in ("sampler", "steps", "guidance", "guidance_interval", "bf16")}}
        row |= {"generator": s["generator"], "batch": s["batch"] or args.batch, "set_images": n_set}
        row |= {"unet_rows_per_image": unet_rows(s["steps"], guided_count(bases[s["generator"]], s))}
        row |= {"set_seconds": statistics.median(seconds[name]), "set_seconds_each": seconds[name]}
        row |= {"s_per_1000": 1000 * statistics.median(seconds[name]) / n_set, "warmup_s": warmup[name]}
        row |= {"speedup_vs_baseline": statistics.median(ratios), "speedup_each": ratios}
        row |= {"quality": quality}
        if name == baseline and args.spread_seeds:
            spread = [quality] + [
                scorer.score(draw(quality_labels, make_rng(args.seed + k, stream=QUALITY)), quality_labels)
                for k in range(1, args.spread_seeds + 1)
            ]
            row["spread"] = {m: [q["matched"].get(m, q[m]) for q in spread] for m in METRICS}
        if args.cas_seeds:
            seeds = list(range(args.cas_seeds))
            precision = "bf16-mixed" if s["bf16"] else "32-true"  # the quick students' set in the setting's precision
            recipe = QuickStudent(SmallCNN, "hard", None, 30, 2e-3, 1e-3, 64, 1.0, "uniform", seeds, "auto", precision)
            candidate = Candidate(s["generator"], s["steps"], s["guidance"], s["sampler"], s["guidance_interval"])
            cas = score_candidate(candidate, data, recipe, args.seed)
            row |= {"val_acc": cas["val_acc"], "val_auc": cas["val_auc"], "cas_runs": cas["runs"]}
        rows.append(row)
        print(json.dumps(row), flush=True)
        artifacts.write_text(out / "frontier.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    plot(out / "frontier.png", rows)
    print(json.dumps({"benchmark": "sampling_frontier", "baseline": baseline, "torch": torch.__version__}))


def plot(path: Path, rows: list[dict[str, Any]]) -> None:
    """One panel per quality metric against seconds per 1,000 images; the baseline's spread as a band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [*METRICS, *(["val_acc"] if "val_acc" in rows[0] else [])]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.4), constrained_layout=True)
    for ax, key in zip(axes, keys, strict=True):
        for r in rows:
            q = r["quality"]
            value = r[key] if key == "val_acc" else q["matched"].get(key, q[key])
            ax.plot(r["s_per_1000"], value, "o", label=r["setting"])
        spread = rows[0].get("spread", {}).get(key)
        if spread:
            ax.axhspan(min(spread), max(spread), color="grey", alpha=0.25)
        ax.set(xlabel="s per 1,000 images", title=key + (" (matched)" if key in METRICS[1:] else ""))
    axes[0].legend(fontsize=6)
    artifacts.save_figure(path, fig, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
