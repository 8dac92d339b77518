"""``python -m kr_lightning mia``: membership inference against the deployed teacher and GKD student.

Design (see ``MIA.md`` of the docs): one audit pool, the real train and test images (val is left out: it selects
checkpoints and sampling knobs, so it is no clean non-member), optionally with canaries (pool images given a wrong
label). A keep matrix makes each image IN for a fixed number of ``n_references`` reference runs: a share
``inclusion`` (by default |train| / |pool|, so that a reference trains on about as many images as the deployed
model), and each canary IN for half of them. Each reference run repeats the deployed recipe, checkpoint selection on
val included, on its IN images (mode ``a``: teacher + student with the generator fixed, synthetic sets generated once
and shared; mode ``b``: generator + teacher + student). Logits on fixed query views are saved per reference
(``refs/refNNN/logits.npz``, one unit of work: an interrupted audit resumes at the next missing unit) and for the
deployed models (``targets.npz``), so every score can be recomputed from files. Attacks are scored for the
deployed models (members: the train split; non-members: the test split) and pooled over the reference models
taken in turn as targets (leave-one-out), separately on the regular images and on the canaries.
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
from kr_lightning.models.loading import load_classifier, load_generator
from kr_lightning.privacy.design import keep_matrix
from kr_lightning.privacy.epsilon import empirical_epsilon
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
CANARY_NOTE = {
    "a": "; canaries: the fixed generator never saw them (it trained on the train split with true labels), so a "
    "canary can reach a reference student only through its reference teacher's soft labels on synthetic images",
    "b": "; canaries: each reference generator, teacher and student trains on the canaries IN for it",
}

TEACHER_NOTE = "teacher only: re-trained per reference model with the deployed teacher's recipe"
TEACHER_CANARY_NOTE = ", canaries IN for half"


def load_or_make_keep(folder: Path, n_references: int, pool: AuditPool, seed: int, n_in: np.ndarray) -> np.ndarray:
    """The keep matrix of this audit, created once; a different M, pool, canaries or inclusion on disk is an error."""
    path = folder / "keep.npz"
    if path.is_file():
        with np.load(path) as saved:
            keep, labels, origin = saved["keep"], saved["labels"], saved["origin"] if "origin" in saved else None
        same_pool = np.array_equal(labels, pool.labels) and origin is not None and np.array_equal(origin, pool.origin)
        if keep.shape != (n_references, len(pool)) or not same_pool or not np.array_equal(keep.sum(0), n_in):
            raise ConfigError(
                f"{folder} holds an audit with {keep.shape[0]} reference models over {keep.shape[1]} images that does "
                f"not match this config ({n_references} models over {len(pool)} images, its canaries and inclusion "
                "counts). Use a new `out` folder or restore the config it was made with."
            )
        return keep
    keep = keep_matrix(n_references, len(pool), np.random.default_rng(seed), n_in)
    artifacts.write_npz(path, keep=keep, labels=pool.labels, origin=pool.origin)
    return keep


def inclusion_counts(
    pool: AuditPool, n_references: int, inclusion: float | None, rmia_refs: list[int]
) -> tuple[np.ndarray, float]:
    """How many reference runs train on each pool image (canaries: half), checked against what the attacks need."""
    share = inclusion if inclusion is not None else float(pool.is_target_member.mean() / pool.is_target_scored.mean())
    if not 0 < share < 1:
        raise ConfigError(f"inclusion must lie in (0, 1); got {share}")
    regular = int(round(share * n_references))
    need = max([1, *rmia_refs]) + 1  # OUT references of an OUT image when another reference is the target
    if regular < 2 or n_references - regular < need or (pool.is_canary.any() and n_references % 2):
        raise ConfigError(
            f"{n_references} reference runs at inclusion {share:.3f}: each image is IN for {regular} and OUT for "
            f"{n_references - regular} of them; LiRA needs >= 2 of each and RMIA with {max([1, *rmia_refs])} "
            f"references needs >= {need} OUT (one of them may be the target), canaries need an even count. Raise "
            "n_references, lower rmia_refs, or set inclusion."
        )
    return np.where(pool.is_canary, n_references // 2, regular), share


def deployed_logits(folder: Path, deployed: dict[str, Path], pool: AuditPool, views: dict[str, Any]) -> dict:
    """The deployed models' logits on the pool, saved once in ``targets.npz`` (re-scoring reads them back)."""
    path = folder / "targets.npz"
    if path.is_file():
        with np.load(path) as saved:
            if set(deployed) <= set(saved.files) and np.array_equal(saved["labels"], pool.labels):
                return {kind: saved[kind] for kind in deployed}
    targets = {kind: view_logits(load_classifier(ckpt), pool.images, **views) for kind, ckpt in deployed.items()}
    artifacts.write_npz(path, labels=pool.labels, origin=pool.origin, **targets)
    return targets


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
    inclusion: float | None = None,
    n_canaries: int = 0,
    min_accuracy: float = 0.0,
    max_retries: int = 2,
    shift: int = 1,
    rmia_refs: list[int] = [1, 2, 3],  # noqa: B006 - jsonargparse needs a literal default
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
        data: The real dataset (pool = its train + test images; members of the deployed models = train, clean
            non-members = test; val selects checkpoints, for the deployed and the reference runs alike).
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
        n_references: M reference runs.
        inclusion: Share of the reference runs that train on each (non-canary) image; ``None``: |train| / |pool|,
            so that a reference trains on about as many images as the deployed models (0.5: LiRA's design).
        n_canaries: C pool images relabelled to a random wrong class, each IN for half the reference runs: the
            worst case (TPR on canaries). The deployed models never saw them (their scores leave them out).
        min_accuracy: Val accuracy floor of every reference model; weaker ones are retrained.
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
    if n_canaries < 0:
        raise ConfigError(f"n_canaries must be >= 0; got {n_canaries}")

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
        if mode == "b":
            check_mode_b_plan(plan)
    recipe = ReferenceRecipe(
        teacher=deployed_recipe(teacher_folder, data.flag),
        dataset=dataset,
        student=deployed_recipe(student_folder, data.flag) if student_folder is not None else None,
        generator=deployed_recipe(located(generator_run, "generator"), data.flag) if mode == "b" else None,
        plan=plan,
        mode=mode,
        cache=Path(cache_dir) if cache_dir else located(None, "synthetic"),
        held_out=data.split("val"),
        floor=min_accuracy,
        retries=max_retries,
        views={"shift": shift, "hflip": data.hflip},
    )
    pool = AuditPool.from_datamodule(data)
    if n_canaries > len(pool):
        raise ConfigError(f"n_canaries={n_canaries} exceeds the {len(pool)} images of the pool (train + test)")
    pool = pool.with_canaries(n_canaries, data.num_classes, np.random.default_rng([seed, 1]))
    n_in, share = inclusion_counts(pool, n_references, inclusion, rmia_refs)
    keep = load_or_make_keep(folder, n_references, pool, seed, n_in)
    targets = deployed_logits(folder, deployed, pool, recipe.views)
    records = []
    for i in range(n_references):
        unit = folder / "refs" / f"ref{i:03d}"
        if not (unit / "logits.npz").is_file():
            run_reference(i, unit, keep[i], pool, recipe, seed)
        records.append(np.load(unit / "logits.npz"))
    rng = np.random.default_rng(seed)
    member, scored, canary = pool.is_target_member, pool.is_target_scored, pool.is_canary
    models: dict[str, Any] = {}
    exposed: dict[str, Any] = {}
    rmia = {"rmia_refs": rmia_refs, "rmia_a": rmia_a, "rmia_tie_break": rmia_tie_break}
    for kind, target in targets.items():
        refs = np.stack([r[kind] for r in records])
        # the deployed model: its own train members against the test split; canaries are not its data
        part = (target[scored], refs[:, scored], keep[:, scored], pool.labels[scored])
        scores = attack_scores(*part, ~member[scored], **rmia)
        pooled, pooled_member, groups = pooled_scores(refs, keep, pool.labels, **rmia)
        is_canary = np.tile(canary, n_references)
        # the pooled leave-one-out scores, split once: the population (table row and ROC curve) and the canaries
        population = ({a: v[~is_canary] for a, v in pooled.items()}, pooled_member[~is_canary])
        on_canaries = ({a: v[is_canary] for a, v in pooled.items()}, pooled_member[is_canary])
        models[kind] = {"attacks": summarize_all(scores, member[scored], rng, n_boot)}
        models[f"{kind}, pooled over {n_references} reference targets"] = {
            "attacks": summarize_all(*population, rng, n_boot, groups[~is_canary])
        }
        if canary.any():
            attacks = summarize_all(*on_canaries, rng, n_boot, groups[is_canary])
            delta = 1 / (10 * int(member.sum()))
            for attack, summary in attacks.items():  # optimistic: the threshold is picked on the same scores
                summary["epsilon_lower_bound"] = empirical_epsilon(on_canaries[0][attack], on_canaries[1], delta)
                summary["epsilon_lower_bound_delta"] = delta
            models[f"{kind}, canaries, pooled over {n_references} reference targets"] = {"attacks": attacks}
        for attack in scores:
            curves = {"deployed": (scores[attack], member[scored])}
            curves["pooled LOO"] = (population[0][attack], population[1])  # as the pooled table row
            if canary.any():
                curves["canaries (pooled LOO)"] = (on_canaries[0][attack], on_canaries[1])
            roc_figure(folder / f"roc_{kind}_{attack}.png", f"{kind}: {attack}", curves)
        lira = np.full(len(pool), -np.inf)
        lira[scored] = np.where(member[scored], scores["lira_online_fixed_var"], -np.inf)
        order = [int(j) for j in np.argsort(-lira)[:top_k]]
        exposed[kind] = [
            {"pool_index": j, "train_index": j, "label": int(pool.labels[j]), "lira": float(lira[j])} for j in order
        ]
    deployed_train = int(member.sum())
    canary_note = (CANARY_NOTE[mode] if "student" in deployed else TEACHER_CANARY_NOTE) if canary.any() else ""
    note = (MODE_NOTE[mode] if "student" in deployed else TEACHER_NOTE) + canary_note
    summary = {
        "note": note,
        "mode": mode,
        "n_references": n_references,
        "rmia": rmia,
        "deployed": {name: {"ckpt": str(c), "sha256": artifacts.file_digest(c)} for name, c in deployed.items()},
        "pool": {
            "n": len(pool),
            "splits": "train + test (val selects checkpoints and knobs: not in the pool)",
            "members_of_deployed": deployed_train,
            "nonmembers_of_deployed": int((scored & ~member).sum()),
            "canaries": int(canary.sum()),
            "inclusion": share,
            "reference_train_size_mean": float(keep.sum(1).mean()),
            "deployed_train_size": deployed_train,
            "queries": int(targets["teacher"].shape[1]),
        },
        "files": {
            "keep": str(folder / "keep.npz"),
            "targets": str(folder / "targets.npz"),
            "refs": str(folder / "refs"),
        },
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


def check_mode_b_plan(plan: SyntheticPlan) -> None:
    """Mode b re-trains the generator per reference: refuse a student that draws from a few-step generator.

    Raises:
        ConfigError: The plan's generator was distilled (mode b would sample an undistilled generator with the
            few-step knobs).
    """
    if load_generator(plan.generator).distilled_from:
        raise ConfigError(
            f"mode b re-trains the generator per reference, but the deployed student draws from a few-step "
            f"generator ({plan.generator}) distilled from it, and mode b does not re-train the distillation; "
            "audit it with --mode=a, or audit a student that samples the generator itself"
        )


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
