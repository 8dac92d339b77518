"""Checkpoint optimisation and sampling tuning (KR stages 2 and 3), scored by CAS on the real **val** split.

Each candidate (a generator checkpoint, or a setting of guidance / steps / sampler for the chosen checkpoint)
draws one static synthetic set, trains a quick student on it (hard or teacher soft labels) for one or more seeds
and is scored by the students' final accuracy on the real validation split. The test split is never read.
Every candidate's result is written to ``<out>/candidates/<id>.json`` as soon as it is known, so an interrupted
selection resumes where it stopped; ``selection.json`` lists all candidates and the winner.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from torch import nn

from kr_lightning import artifacts
from kr_lightning.data.datamodule import ImageDataModule
from kr_lightning.distill.candidates import Candidate, QuickStudent, candidate_quality, score_candidate
from kr_lightning.distill.criteria import Criterion, best_of
from kr_lightning.distill.selection_plot import plot_selection
from kr_lightning.errors import ConfigError, MissingInputError
from kr_lightning.models.networks import SmallCNN
from kr_lightning.models.sampling import SamplerKind, check_interval
from kr_lightning.models.speedups import GenPrecision, wants_bf16
from kr_lightning.quality.scorer import QualityScorer
from kr_lightning.seeding import SCHEME
from kr_lightning.synthetic_dataset import resolve_device


def generator_checkpoints(run: Path) -> list[Path]:
    """Every kept checkpoint of a generator run (``checkpoints/*.ckpt`` except ``last.ckpt``), by epoch."""
    found = [p for p in sorted((Path(run) / "checkpoints").glob("*.ckpt")) if p.name != "last.ckpt"]
    if not found:
        raise MissingInputError(
            f"no generator checkpoints in {Path(run) / 'checkpoints'}; train the generator stage first "
            "(its ModelCheckpoint keeps one every N epochs)"
        )
    return found


def describe_net(net: Callable[..., nn.Module]) -> str:
    """A description of a backbone factory that is the same in every process (no object addresses).

    jsonargparse hands over ``partial(<wrapper>, <instantiator>, <class>, **init_args)``; the description is the
    innermost class or function with its keyword arguments, e.g. ``kr_lightning.models.networks.SmallCNN(width=32)``.
    """
    kwargs: dict[str, Any] = {}
    target: Any = net
    while isinstance(target, functools.partial):
        kwargs = {**target.keywords, **kwargs}
        target = next((a for a in reversed(target.args) if callable(a)), target.func)
    name = f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', type(target).__qualname__)}"
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in sorted(kwargs.items()))})"


def run_search(
    candidates: list[Candidate],
    real: ImageDataModule,
    recipe: QuickStudent,
    seed: int,
    folder: Path,
    quality: tuple[QualityScorer, int] | None = None,
) -> list[dict[str, Any]]:
    """Score each candidate once; results already in ``folder`` for the same recipe and seed are reused (resume).

    With ``quality = (scorer, n)`` every candidate also gets the quality metrics of ``n`` images (added to a
    reused result that lacks them).
    """
    fields = {k: v for k, v in asdict(recipe).items() if k != "net"} | {"net": describe_net(recipe.net)}
    if fields["gen_precision"] == "32-true":  # float32 results keep the tags they had before the option existed
        del fields["gen_precision"]
    tag = hashlib.sha1(repr((sorted(fields.items()), seed, real.name, SCHEME)).encode()).hexdigest()[:8]
    results = []
    for candidate in candidates:
        path = folder / f"{candidate.key}-r{tag}.json"
        result = json.loads(path.read_text()) if path.is_file() else None
        scored = result is None
        if scored:
            result = score_candidate(candidate, real, recipe, seed)
        if quality is not None and (result.get("quality") or {}).get("n") != quality[1]:
            bf16 = wants_bf16(recipe.gen_precision)  # type: ignore[arg-type]
            result["quality"] = candidate_quality(candidate, quality[0], quality[1], seed, bf16=bf16)
            scored = True
        if scored:  # a finished candidate is reused silently
            artifacts.write_json(path, result)
            shown = f", class fidelity {result['quality']['fidelity']:.3f}" if result.get("quality") else ""
            print(f"select: {candidate.key}: val acc {result['val_acc']:.4f}, val auc {result['val_auc']:.4f}{shown}")
        results.append(result)
    return results


def select(
    *,
    generator_run: str,
    data: ImageDataModule,
    out: str,
    checkpoints: list[str] | None = None,
    steps: int = 20,
    guidance: float = 2.0,
    sampler: SamplerKind = "ddim",
    guidance_interval: list[float] | None = None,
    guidance_grid: list[float] = [1.0, 2.0, 3.0],  # noqa: B006 - jsonargparse needs a literal default
    steps_grid: list[int] = [10, 20],  # noqa: B006
    sampler_grid: list[SamplerKind] = ["dpmsolver++"],  # noqa: B006
    interval_grid: list[list[float] | None] = [None],  # noqa: B006
    labels: Literal["hard", "soft"] = "hard",
    teacher_ckpt: str | None = None,
    net: Callable[[int, int], nn.Module] = SmallCNN,
    epochs: int = 30,
    lr: float = 2e-3,
    weight_decay: float = 1e-3,
    batch_size: int = 64,
    multiplier: float = 1.0,
    class_balance: Literal["uniform", "real"] = "uniform",
    seeds: list[int] = [0],  # noqa: B006
    seed: int = 0,
    quality_samples: int = 1000,
    criterion: Criterion = "cas",
    coverage_floor: float = 0.9,
    accelerator: str = "auto",
    gen_precision: GenPrecision = "32-true",
    run_root: str = "runs",
    seed_dir: str | None = None,
) -> Path:
    """Checkpoint optimisation, then sampling tuning, by CAS on the real validation split.

    Stage 1 scores every kept generator checkpoint with fixed knobs (``steps``, ``guidance``, ``sampler``);
    stage 2 scores the best checkpoint on the grid ``sampler_grid x steps_grid x guidance_grid x interval_grid``.
    Writes
    ``<out>/selection.json`` (every candidate's val accuracy / AUC and the winner, which the student config reads
    through ``data.selection``) and ``<out>/selection.png``.

    Args:
        generator_run: Generator run folder (its ``checkpoints/`` are scored).
        data: The real dataset (only its train size, metadata and **val** split are used).
        out: Output folder.
        checkpoints: Score these checkpoints instead of every kept one.
        steps: Sampler steps while scoring checkpoints.
        guidance: Guidance scale while scoring checkpoints.
        sampler: Sampler while scoring checkpoints.
        guidance_interval: Guidance interval ``[lo, hi]`` of noise levels while scoring checkpoints (``None``:
            every step guided).
        guidance_grid: Guidance scales tried in stage 2.
        steps_grid: Step counts tried in stage 2.
        sampler_grid: Samplers tried in stage 2.
        interval_grid: Guidance intervals tried in stage 2 (``null``: every step guided).
        labels: Quick-student labels: the generator's class (``hard``) or the teacher's softmax (``soft``).
        teacher_ckpt: Teacher checkpoint: the soft labels, and the class judge and feature space of the quality
            metrics (:mod:`kr_lightning.quality`); ``None`` scores by CAS alone.
        net: Quick-student backbone, called as ``net(in_channels, num_classes)``.
        epochs: Quick-student epochs.
        lr: Quick-student learning rate.
        weight_decay: Quick-student weight decay.
        batch_size: Quick-student batch size.
        multiplier: Synthetic set size per candidate, as a multiple of the real train split.
        class_balance: Class mix of each candidate's set (``uniform`` or the ``real`` train frequencies).
        seeds: Quick-student seeds (the score is their mean).
        seed: Seed of the synthetic sets (the same noise for every candidate).
        quality_samples: Images per candidate scored by the quality metrics (needs ``teacher_ckpt``; 0: none).
        criterion: What picks the checkpoint and the knobs: ``cas`` (val accuracy; ties: class fidelity, then val
            AUC), ``fidelity`` (class fidelity; ties: CAS), ``fidelity_coverage`` (class fidelity among the
            candidates whose coverage reaches ``coverage_floor`` x the best one's; ties: CAS) or ``fd`` (size-matched
            Fréchet distance; ties: CAS).
        coverage_floor: For ``fidelity_coverage``: the fraction of the best candidate's coverage a candidate needs.
        accelerator: Lightning accelerator for the quick students, generation and the quality metrics' samples.
        gen_precision: Generator precision (``bf16-mixed``: bfloat16 autocast, see ``GKDDataModule``); score
            candidates in the precision the students will be trained with.
        run_root: Root of the run folders (recipes derive ``seed_dir`` and the paths above from it).
        seed_dir: This dataset and seed's folder, ``${run_root}/<flag>/seed<seed>`` in the recipes.
    """
    if labels == "soft" and teacher_ckpt is None:
        raise ConfigError("labels: soft needs teacher_ckpt")
    folder = Path(out)
    paths = checkpoints or [str(p) for p in generator_checkpoints(Path(generator_run))]
    recipe = QuickStudent(
        net,
        labels,
        teacher_ckpt,
        epochs,
        lr,
        weight_decay,
        batch_size,
        multiplier,
        class_balance,
        seeds,
        accelerator,
        gen_precision,
    )
    scorer = None
    if teacher_ckpt is not None and quality_samples > 0:
        # the quality samples are drawn where the quick students' sets are (the accelerator), in their precision
        scorer = QualityScorer.from_data(data, teacher_ckpt, seed=seed, device=resolve_device(accelerator))
    elif criterion != "cas":
        raise ConfigError(
            f"criterion {criterion!r} needs the quality metrics: set teacher_ckpt and quality_samples > 0"
        )
    quality = None if scorer is None else (scorer, quality_samples)
    interval = None if guidance_interval is None else check_interval(guidance_interval)
    intervals = [None if i is None else check_interval(i) for i in interval_grid]
    stage1 = [Candidate(p, steps, guidance, sampler, interval) for p in paths]
    by_checkpoint = run_search(stage1, data, recipe, seed, folder / "candidates", quality)
    best_ckpt = best_of(by_checkpoint, criterion, coverage_floor)["generator"]
    grid = [(s, st, g, i) for s in sampler_grid for st in steps_grid for g in guidance_grid for i in intervals]
    stage2 = [Candidate(best_ckpt, st, g, s, i) for s, st, g, i in grid]
    by_knobs = run_search(stage2, data, recipe, seed, folder / "candidates", quality)
    winner = best_of(by_knobs + [r for r in by_checkpoint if r["generator"] == best_ckpt], criterion, coverage_floor)
    summary = {
        "dataset": data.name,
        "score": "mean final val/acc of quick students (CAS); the test split is never read",
        "criterion": criterion,
        "coverage_floor": coverage_floor if criterion == "fidelity_coverage" else None,
        "quality_reference": None if scorer is None else scorer.reference(),
        "recipe": {k: v for k, v in asdict(recipe).items() if k != "net"}
        | {"net": describe_net(recipe.net), "seed": seed},
        "checkpoints": by_checkpoint,
        "knobs": by_knobs,
        "winner": {k: winner[k] for k in ("generator", "steps", "guidance", "sampler", "val_acc", "val_auc")}
        | {"guidance_interval": winner.get("guidance_interval"), "quality": winner.get("quality")},
    }
    artifacts.write_json(folder / "selection.json", summary)
    plot_selection(folder / "selection.png", by_checkpoint, by_knobs)
    print(f"select: winner {summary['winner']} -> {folder / 'selection.json'}")
    return folder / "selection.json"
