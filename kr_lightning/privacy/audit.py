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

from kr_lightning import artifacts
from kr_lightning.data.datamodule import ImageDataModule
from kr_lightning.distill.plan import SyntheticPlan
from kr_lightning.errors import ConfigError, MissingInputError
from kr_lightning.layout import check_run_dataset
from kr_lightning.models.loading import load_classifier
from kr_lightning.privacy.design import keep_matrix
from kr_lightning.privacy.memorisation_audit import memorisation_report
from kr_lightning.privacy.plots import roc_figure
from kr_lightning.privacy.references import ReferenceRecipe, run_reference
from kr_lightning.privacy.scoring import attack_scores, distinguishable_from_chance, pooled_scores, summarize_all
from kr_lightning.privacy.signals import AuditPool, view_logits
from kr_lightning.stages import build_stage

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


def mia(
    *,
    data: ImageDataModule,
    out: str,
    seed: int = 0,
    run_root: str = "runs",
    seed_dir: str | None = None,
    teacher_run: str | None = None,
    student_run: str | None = None,
    student: bool = True,
    generator_run: str | None = None,
    cache_dir: str | None = None,
    mode: Literal["a", "b"] = "a",
    n_references: int = 16,
    min_accuracy: float = 0.0,
    max_retries: int = 2,
    shift: int = 1,
    rmia_refs: list[int] = [1, 2, 4],  # noqa: B006 - jsonargparse needs a literal default
    rmia_a: float = 0.3,
    rmia_tie_break: bool = False,
    n_boot: int = 1000,
    top_k: int = 20,
) -> Path:
    """Audit the deployed teacher (and student) with LOSS, class-wise modified entropy, LiRA and RMIA.

    Writes ``<out>/mia.json`` (every attack's AUC, balanced accuracy, TPR at 1 % and 0.1 % FPR with bootstrap 95 %
    CIs and the number of negatives; reference-model accuracies; the most exposed training images; the generator
    memorisation audit) and ``<out>/roc_<attack>.png`` (log-log ROC). Reference runs follow the deployed recipe:
    :func:`kr_lightning.stages.build_stage` rebuilds each stage from the deployed run's own ``config.yaml`` (every
    override it was run with included) with only the training set, the seed and the run folder changed.

    Args:
        data: The real dataset (pool = its train + val + test images; members of the deployed models = train).
        out: Output folder (resumable).
        seed: The deployed runs' seed; also the seed of the keep matrix, the reference runs and the bootstrap.
        run_root: Root of the run folders (recipes derive ``seed_dir`` from it).
        seed_dir: This dataset and seed's folder, ``${run_root}/<flag>/seed<seed>`` in the recipes.
        teacher_run: Deployed teacher run folder (default ``<seed_dir>/teacher``).
        student_run: Deployed GKD student run folder (default ``<seed_dir>/student``).
        student: Audit the GKD student too.
        generator_run: Mode ``b``: the generator run whose recipe every reference repeats (default
            ``<seed_dir>/generator``).
        cache_dir: Mode ``a``: where the deployed student's synthetic sets are (or will be) cached, so that the
            reference students train on exactly those images (default ``<seed_dir>/synthetic``).
        mode: ``a`` (generator fixed) or ``b`` (generator re-trained per reference).
        n_references: M reference runs (even); each image is IN for M/2 of them.
        min_accuracy: Held-out accuracy floor of every reference model; weaker ones are retrained.
        max_retries: Retraining attempts per reference model.
        shift: Query views: shifts by this many pixels (0: the identity view only); the horizontal flip is added
            where the dataset's fragment enables it (a label-preserving flip).
        rmia_refs: Numbers of OUT references for RMIA.
        rmia_a: RMIA offline parameter ``a``.
        rmia_tie_break: Rank RMIA's equal counts by the likelihood ratio (not the paper's score; off by default).
        n_boot: Bootstrap replicates for the CIs.
        top_k: Most exposed training images listed per model.
    """
    folder = Path(out)

    def located(given: str | None, stage: str) -> Path:
        if given is not None:
            return Path(given)
        if seed_dir is None:
            raise ConfigError(f"mia: set {stage}_run, or seed_dir (recipes derive it from run_root) to derive it")
        return Path(seed_dir) / stage

    teacher_folder = located(teacher_run, "teacher")
    teacher_ckpt = teacher_folder / "checkpoints" / "best.ckpt"
    deployed = {"teacher": teacher_ckpt}
    dataset = data.dataset_kwargs()
    student_folder = located(student_run, "student") if student else None
    plan = None
    if student_folder is not None:
        deployed["student"] = student_folder / "checkpoints" / "best.ckpt"
        plan = deployed_plan(deployed_recipe(student_folder, data.flag), dataset, seed, folder / "plan")
    recipe = ReferenceRecipe(
        teacher=deployed_recipe(teacher_folder, data.flag),
        dataset=dataset,
        student=deployed_recipe(student_folder, data.flag) if student_folder is not None else None,
        generator=deployed_recipe(located(generator_run, "generator"), data.flag) if mode == "b" else None,
        plan=plan,
        mode=mode,
        cache=Path(cache_dir) if cache_dir else located(None, "synthetic"),
        floor=min_accuracy,
        retries=max_retries,
        views={"shift": shift, "hflip": data.hflip},
    )
    pool = AuditPool.from_datamodule(data)
    keep = load_or_make_keep(folder, n_references, pool, seed)
    targets = {kind: view_logits(load_classifier(path), pool.images, **recipe.views) for kind, path in deployed.items()}
    records = []
    for i in range(n_references):
        unit = folder / "refs" / f"ref{i:03d}"
        if not (unit / "logits.npz").is_file():
            run_reference(i, unit, keep[i], pool, recipe, seed)
        records.append(np.load(unit / "logits.npz"))
    rng = np.random.default_rng(seed)
    member = pool.is_target_member
    models: dict[str, Any] = {}
    exposed: dict[str, Any] = {}
    rmia = {"rmia_refs": rmia_refs, "rmia_a": rmia_a, "rmia_tie_break": rmia_tie_break}
    for kind, target in targets.items():
        refs = np.stack([r[kind] for r in records])
        scores = attack_scores(target, refs, keep, pool.labels, ~member, **rmia)
        pooled, pooled_member, groups = pooled_scores(refs, keep, pool.labels, **rmia)
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
        "rmia": rmia,
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
    if recipe.student is not None and plan is not None and mode == "a":
        summary["memorisation"] = memorisation_report(
            recipe.student, dataset, plan, pool, teacher_ckpt, folder, recipe.cache
        )
    path = artifacts.write_json(folder / "mia.json", summary)
    print(f"mia: wrote {path}")
    return path


def deployed_recipe(run: Path, flag: str) -> Path:
    """The full config a deployed run was trained with (its ``config.yaml``), checked to be of dataset ``flag``."""
    config = run / "config.yaml"
    if not config.is_file():
        raise MissingInputError(f"{config} does not exist; the audit repeats the deployed run's recipe: fit it first")
    check_run_dataset(run, flag)
    return config


def deployed_plan(recipe: Path, dataset: dict[str, Any], seed: int, folder: Path) -> SyntheticPlan:
    """The deployed student's synthetic-set plan, resolved by its own data module (recipe, dataset and seed)."""
    stage = build_stage(
        recipe, dataset, seed=seed, overrides={"trainer": {"default_root_dir": str(folder)}}, quiet=True
    )
    stage.datamodule.setup("fit")
    return stage.datamodule.plan()
