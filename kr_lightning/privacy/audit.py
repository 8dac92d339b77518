"""``python -m kr_lightning mia``: membership inference against the deployed teacher and GKD student.

Design (see ``MIA.md`` of the docs): one audit pool (every real train, val and test image); a keep matrix assigns
each pool image IN to exactly half of ``n_references`` reference runs; each reference run repeats the deployed
recipe on its IN images (mode ``a``: teacher + student with the generator fixed, synthetic sets generated once and
shared; mode ``b``: generator + teacher + student). Logits on fixed query views are saved per reference
(``refs/refNNN/logits.npz``, one unit of work: an interrupted audit resumes at the next missing unit) and every
attack is scored from the saved logits, both for the deployed models (members: the train split) and pooled over
the reference models taken in turn as targets (leave-one-out).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from kr_lightning import artifacts
from kr_lightning.data.base import ImageDataModule
from kr_lightning.distill.synthesis import balanced_labels, prior_labels, set_size
from kr_lightning.errors import ConfigError, TrainingError
from kr_lightning.models.loading import load_classifier
from kr_lightning.privacy.design import keep_matrix
from kr_lightning.privacy.memorisation_audit import memorisation_report
from kr_lightning.privacy.plots import roc_figure
from kr_lightning.privacy.references import accuracy, train_classifier, train_generator
from kr_lightning.privacy.scoring import attack_scores, distinguishable_from_chance, pooled_scores, summarize_all
from kr_lightning.privacy.signals import AuditPool, view_logits

MODE_NOTE = {
    "a": "mode a: teacher and student re-trained per reference model with the generator fixed; the generator saw "
    "every member, so this is a lower bound on the student's leakage",
    "b": "mode b: generator, teacher and student re-trained per reference model (the whole pipeline)",
}


def load_or_make_keep(folder: Path, n_references: int, pool: AuditPool, seed: int) -> np.ndarray:
    """The keep matrix of this audit, created once; a different M or pool on disk is an error."""
    path = folder / "keep.npz"
    if path.is_file():
        with np.load(path) as saved:
            keep, labels = saved["keep"], saved["labels"]
        if keep.shape != (n_references, len(pool)) or not np.array_equal(labels, pool.labels):
            raise ConfigError(
                f"{folder} holds an audit with {keep.shape[0]} reference models over {keep.shape[1]} images; this "
                f"config asks for {n_references} over {len(pool)}. Use a new `out` folder or restore the config."
            )
        return keep
    keep = keep_matrix(n_references, len(pool), np.random.default_rng(seed))
    artifacts.write_npz(path, keep=keep, labels=pool.labels)
    return keep


def student_plan(student_run: Path, train_labels: np.ndarray, num_classes: int) -> tuple[int, list[int]]:
    """The deployed student's data seed and per-class synthetic counts (reference students reuse both)."""
    config = yaml.safe_load((student_run / "config.yaml").read_text())
    data = config["data"]["init_args"]
    counts = data.get("counts")
    if counts is None:
        n = set_size(float(data.get("multiplier", 1.0)), len(train_labels))
        if data.get("class_balance", "uniform") == "real":
            labels = prior_labels(np.bincount(train_labels, minlength=num_classes), n)
        else:
            labels = balanced_labels(num_classes, n)
        counts = np.bincount(labels.numpy(), minlength=num_classes).tolist()
    return int(data.get("seed") if data.get("seed") is not None else config["seed_everything"]), counts


def train_until_accurate(train: Any, floor: float, retries: int, held_out: Any) -> tuple[Path, float, int]:  # noqa: ANN401
    """Call ``train(attempt)`` until the model reaches ``floor`` accuracy on ``held_out``."""
    for attempt in range(retries + 1):
        ckpt = train(attempt)
        acc = accuracy(load_classifier(ckpt), held_out)
        if acc >= floor:
            return ckpt, acc, attempt
        print(f"mia: {ckpt} reached {acc:.3f} < min_accuracy {floor}; retraining (attempt {attempt + 1})")
    raise TrainingError(
        f"a reference model stayed below min_accuracy={floor} after {retries + 1} attempts ({ckpt}: {acc:.3f}); "
        "lower min_accuracy or fix the training recipe"
    )


def mia(
    *,
    data: ImageDataModule,
    teacher_run: str,
    teacher_config: str,
    out: str,
    student_run: str | None = None,
    student_config: str | None = None,
    generator_config: str | None = None,
    selection: str | None = None,
    cache_dir: str | None = None,
    mode: Literal["a", "b"] = "a",
    n_references: int = 16,
    min_accuracy: float = 0.0,
    max_retries: int = 2,
    shift: int = 1,
    hflip: bool = False,
    rmia_refs: list[int] = [1, 2, 4],  # noqa: B006 - jsonargparse needs a literal default
    rmia_a: float = 0.3,
    n_boot: int = 1000,
    top_k: int = 20,
    seed: int = 0,
) -> Path:
    """Audit the deployed teacher (and student) with LOSS, class-wise modified entropy, LiRA and RMIA.

    Writes ``<out>/mia.json`` (every attack's AUC, balanced accuracy, TPR at 1 % and 0.1 % FPR with bootstrap 95 %
    CIs and the number of negatives; reference-model accuracies; the most exposed training images; the generator
    memorisation audit) and ``<out>/roc_<attack>.png`` (log-log ROC).

    Args:
        data: The real dataset (pool = its train + val + test images; members of the deployed models = train).
        teacher_run: Deployed teacher run folder (``checkpoints/best.ckpt``).
        teacher_config: Teacher stage config, repeated by each reference run.
        out: Output folder (resumable).
        student_run: Deployed GKD student run folder (``checkpoints/best.ckpt``, ``config.yaml``).
        student_config: Student stage config, repeated by each reference run.
        generator_config: Generator stage config (mode ``b`` only).
        selection: ``selection.json`` giving the sampling knobs (and, in mode ``a``, the generator).
        cache_dir: Mode ``a``: where the deployed student's synthetic sets are (or will be) cached, so that the
            reference students train on exactly those images (default ``<out>/synthetic``).
        mode: ``a`` (generator fixed) or ``b`` (generator re-trained per reference).
        n_references: M reference runs (even); each image is IN for M/2 of them.
        min_accuracy: Held-out accuracy floor of every reference model; weaker ones are retrained.
        max_retries: Retraining attempts per reference model.
        shift: Query views: shifts by this many pixels (0: the identity view only).
        hflip: Query views: add the horizontal flip (only where flips preserve labels).
        rmia_refs: Numbers of OUT references for RMIA.
        rmia_a: RMIA offline parameter ``a``.
        n_boot: Bootstrap replicates for the CIs.
        top_k: Most exposed training images listed per model.
        seed: Seed of the keep matrix, the reference runs and the bootstrap.
    """
    if mode == "b" and generator_config is None:
        raise ConfigError("mode b re-trains the generator: set generator_config")
    folder = Path(out)
    cache = Path(cache_dir) if cache_dir else folder / "synthetic"
    pool = AuditPool.from_datamodule(data)
    keep = load_or_make_keep(folder, n_references, pool, seed)
    views = {"shift": shift, "hflip": hflip}
    deployed = {"teacher": Path(teacher_run) / "checkpoints" / "best.ckpt"}
    if student_run is not None:
        if student_config is None:
            raise ConfigError("auditing the student needs student_config (its recipe is repeated per reference)")
        deployed["student"] = Path(student_run) / "checkpoints" / "best.ckpt"
    targets = {kind: view_logits(load_classifier(path), pool.images, **views) for kind, path in deployed.items()}
    plan = student_plan(Path(student_run), data.split("train").labels, data.num_classes) if student_run else None
    records = []
    for i in range(n_references):
        unit = folder / "refs" / f"ref{i:03d}"
        if not (unit / "logits.npz").is_file():
            run_reference(
                i,
                unit,
                keep[i],
                pool,
                teacher_config,
                student_config,
                generator_config,
                selection,
                mode,
                plan,
                cache,
                min_accuracy,
                max_retries,
                views,
                seed,
            )
        records.append(np.load(unit / "logits.npz"))
    rng = np.random.default_rng(seed)
    member = pool.is_target_member
    models: dict[str, Any] = {}
    exposed: dict[str, Any] = {}
    for kind, target in targets.items():
        refs = np.stack([r[kind] for r in records])
        scores = attack_scores(target, refs, keep, pool.labels, ~member, rmia_refs=rmia_refs, rmia_a=rmia_a)
        pooled, pooled_member, groups = pooled_scores(refs, keep, pool.labels, rmia_refs=rmia_refs, rmia_a=rmia_a)
        models[kind] = {"attacks": summarize_all(scores, member, rng, n_boot)}
        models[f"{kind}, pooled over {n_references} reference targets"] = {
            "attacks": summarize_all(pooled, pooled_member, rng, n_boot, groups)
        }
        for attack in scores:
            roc_figure(
                folder / f"roc_{kind}_{attack}.png",
                f"{kind}: {attack}",
                {"deployed": (scores[attack], member), "pooled LOO": (pooled[attack], pooled_member)},
            )
        lira = scores["lira_online_fixed_var"]
        order = [int(j) for j in np.argsort(-np.where(member, lira, -np.inf))[:top_k]]
        exposed[kind] = [
            {"pool_index": j, "train_index": j, "label": int(pool.labels[j]), "lira": float(lira[j])} for j in order
        ]
    summary = {
        "note": MODE_NOTE[mode],
        "mode": mode,
        "n_references": n_references,
        "pool": {"n": len(pool), "members_of_deployed": int(member.sum()), "queries": int(targets["teacher"].shape[1])},
        "models": models,
        "distinguishable_from_chance": {
            name: {a: distinguishable_from_chance(s) for a, s in m["attacks"].items()} for name, m in models.items()
        },
        "reference_models": [
            {k: r[k].tolist() for k in r.files if k.endswith(("acc", "attempts", "seed"))} for r in records
        ],
        "most_exposed": exposed,
    }
    if student_run is not None and mode == "a":
        summary["memorisation"] = memorisation_report(
            Path(student_config), plan, selection, pool, deployed["teacher"], folder, cache, seed
        )
    path = artifacts.write_json(folder / "mia.json", summary)
    print(f"mia: wrote {path}")
    return path


def run_reference(
    i: int,
    unit: Path,
    keep_row: np.ndarray,
    pool: AuditPool,
    teacher_config: str,
    student_config: str | None,
    generator_config: str | None,
    selection: str | None,
    mode: str,
    plan: tuple[int, list[int]] | None,
    cache: Path,
    floor: float,
    retries: int,
    views: dict[str, Any],
    seed: int,
) -> None:
    """Train reference run ``i`` on its IN images and save its logits on the pool (one unit of work)."""
    train, held_out = pool.subset(keep_row), pool.subset(~keep_row)
    base = seed * 1000 + i
    result: dict[str, Any] = {"keep": keep_row}
    generator = None
    if mode == "b":
        generator = train_generator(Path(generator_config), unit / "generator", base, train, [])
    teacher, result["teacher_acc"], result["teacher_attempts"] = train_until_accurate(
        lambda a: train_classifier(Path(teacher_config), unit / "teacher", base + 100_000 * a, train, []),
        floor,
        retries,
        held_out,
    )
    result["teacher"] = view_logits(load_classifier(teacher), pool.images, **views)
    if student_config is not None and plan is not None:
        data_seed, counts = plan
        overrides = [f"--data.teacher_ckpt={teacher}", f"--data.seed={data_seed}", f"--data.counts={counts}"]
        overrides += [f"--data.selection={selection}"] if selection else []
        overrides += [f"--data.cache_dir={cache}"] if mode == "a" else [f"--data.generator={generator}"]
        student, result["student_acc"], result["student_attempts"] = train_until_accurate(
            lambda a: train_classifier(Path(student_config), unit / "student", base + 100_000 * a, None, overrides),
            floor,
            retries,
            held_out,
        )
        result["student"] = view_logits(load_classifier(student), pool.images, **views)
    result["seed"] = np.array(base)
    artifacts.write_npz(unit / "logits.npz", **{k: np.asarray(v) for k, v in result.items()})
    print(
        f"mia: reference {i}: teacher acc {result['teacher_acc']:.3f}, student acc {result.get('student_acc', 0):.3f}"
    )
