"""Stages as objects: the model, data module and trainer of one stage, built from a recipe applied to a dataset.

A stage is a recipe (``experiments/recipes/<profile>/<stage>.yaml``, no dataset in it) plus a dataset (the
``data.init_args`` of ``experiments/data/<flag>.yaml``), a seed and a run root. :class:`KRCLI` is the LightningCLI
that parses and instantiates them (``python -m kr_lightning fit|validate|test|predict``); :func:`build_stage` does
the same from Python objects for the stages that train other stages' models (the privacy audit's reference runs,
benchmarks), so that both build exactly the same objects.

Run layout: everything a stage writes goes under ``trainer.default_root_dir`` (the *run folder*, derived by the
recipe as ``<run_root>/<flag>/seed<k>/<stage>``): ``config.yaml`` and ``run.json`` (full config, git SHA,
versions), ``metrics.csv`` (CSV logger), ``checkpoints/{best,last}.ckpt`` and, after ``test``, ``test/`` with
``test_metrics.json`` and ``test_predictions.npz``. Unless the config says otherwise the CLI fills in that layout:
a CSV logger writing to the run folder and checkpoint callbacks writing to ``<run folder>/checkpoints``.
"""

from __future__ import annotations

import inspect
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import yaml
from jsonargparse import Namespace
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from kr_lightning.errors import CheckpointError, MissingInputError, RunExistsError
from kr_lightning.layout import PARSER_MODE, add_layout_arguments, check_run_dataset
from kr_lightning.runs import mark_finished, read_json, record_test_results, run_dir

LINKED = ("num_classes", "in_channels", "image_size")


def _accepts(class_path: str, name: str) -> bool:
    module, _, attr = class_path.rpartition(".")
    cls = getattr(__import__(module, fromlist=[attr]), attr)
    return name in inspect.signature(cls.__init__).parameters


class KRCLI(LightningCLI):
    """LightningCLI with the data -> model links, the run-folder layout, seeds and checkpoint defaults."""

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:  # noqa: ANN401
        """Parsers raise on a bad argument; ``main`` prints one message instead of the whole usage."""
        return super().init_parser(**{"exit_on_error": False, **kwargs})

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Link the dataset's classes, channels and image size into the model; the run-layout keys."""
        for key in LINKED:
            parser.link_arguments(f"data.{key}", f"model.init_args.{key}", apply_on="instantiate")
        add_layout_arguments(parser)
        parser.add_argument(
            "--overwrite",
            type=bool,
            default=False,
            help="fit: replace a run folder that already holds a finished run (it is deleted first)",
        )

    def _parse_ckpt_path(self) -> None:
        """Refuse a ``--ckpt_path`` saved by another stage (Lightning would silently switch the model class)."""
        subcommand = self.config.get("subcommand")
        before = self.config[subcommand].model.class_path if subcommand else None
        super()._parse_ckpt_path()
        after = self.config[subcommand].model.class_path if subcommand else None
        if before != after:
            ckpt = self.config[subcommand].ckpt_path
            raise CheckpointError(
                f"{ckpt} was saved by a {after.rsplit('.', 1)[-1]} stage but this config runs a "
                f"{before.rsplit('.', 1)[-1]}; pass a checkpoint of that stage (or the config of the stage that "
                "wrote it)"
            )

    def before_instantiate_classes(self) -> None:
        """Fill the run seed, the run layout and the checkpoint to evaluate."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        seed = config.seed_everything
        for group in (config.data, config.model):
            if (
                isinstance(group, Namespace)
                and _accepts(group.class_path, "seed")
                and group.init_args.get("seed") is None
                and not isinstance(seed, bool)
            ):
                group.init_args.seed = int(seed)
        root = config.trainer.default_root_dir
        if root is None:
            return
        root = Path(root)
        check_run_dataset(root, _dataset_of(config))
        _fill_layout(config.trainer, root, version=self.subcommand if self.subcommand not in ("fit", None) else "")
        if self.subcommand and config.get("weights_only") is None:
            config.weights_only = True  # our checkpoints hold tensors and plain types only: never unpickle code
        cleared = False
        if self.subcommand == "fit" and config.get("ckpt_path") is None:
            cleared = _guard_finished_run(root, overwrite=bool(config.get("overwrite")))
        if self.subcommand and config.get("ckpt_path") is None:
            if self.subcommand == "fit" and not cleared and (root / "checkpoints" / "last.ckpt").is_file():
                config.ckpt_path = str(root / "checkpoints" / "last.ckpt")
                print(f"kr_lightning: resuming from {config.ckpt_path}")
            elif self.subcommand in ("validate", "test", "predict"):
                best = root / "checkpoints" / "best.ckpt"
                if not best.is_file():
                    raise MissingInputError(
                        f"no checkpoint to {self.subcommand}: {best} does not exist. Run `fit` with this config "
                        "first, or pass --ckpt_path=PATH."
                    )
                config.ckpt_path = str(best)
                print(f"kr_lightning: {self.subcommand} uses {best}")

    def after_instantiate_classes(self) -> None:
        """Group W&B runs by dataset and seed, one job type per stage folder."""
        if self.subcommand is None:
            return
        config = self.config[self.subcommand]
        name = getattr(self.datamodule, "name", "data")
        for logger in self.trainer.loggers:
            if isinstance(logger, WandbLogger):
                init = logger._wandb_init  # read by wandb.init on first use; Lightning has no public setter
                init["group"] = init["group"] or f"{name}-seed{config.seed_everything}"
                init["job_type"] = init["job_type"] or Path(self.trainer.default_root_dir).name

    def after_fit(self) -> None:
        """Export generators (EMA weights, diffusers format) and mark the run finished in ``run.json``."""
        if self.trainer.is_global_zero and self.trainer.state.finished:
            folder = run_dir(self.trainer)
            if hasattr(self.model, "frozen"):
                print(f"kr_lightning: exported the generator to {self.model.frozen().export(folder / 'export')}")
            mark_finished(folder, self.trainer)
        _finish_wandb(self.trainer)

    def after_test(self) -> None:
        """Write ``test_metrics.json`` and ``test_predictions.npz`` beside the test logs."""
        record_test_results(self.trainer, self.model, self.config[self.subcommand].ckpt_path)
        _finish_wandb(self.trainer)


def _dataset_of(config: Namespace) -> str | None:
    """The dataset flag of a parsed stage config (``None`` when the data module has no ``flag``)."""
    data = config.get("data")
    return data.init_args.get("flag") if isinstance(data, Namespace) and "init_args" in data else None


def _guard_finished_run(root: Path, overwrite: bool) -> bool:
    """Refuse to train into a finished run unless ``overwrite``, which deletes that run folder first.

    Returns:
        Whether ``overwrite`` deleted a finished run: then no rank resumes, even one that parses the command while
        that run's ``last.ckpt`` is still there (launchers that start every rank at once, like torchrun).
    """
    record = root / "run.json"
    if not record.is_file() or "finished" not in read_json(record):
        return False
    if not overwrite:
        raise RunExistsError(
            f"{root} already holds a finished run (see {record}); nothing was changed. Choose another "
            "--trainer.default_root_dir, or pass --overwrite=true to delete it and train again."
        )
    if rank_zero_only.rank == 0:  # every DDP rank parses the command; global rank 0 deletes
        shutil.rmtree(root)
    print(f"kr_lightning: --overwrite=true: deleted the finished run in {root}")
    return True


def _finish_wandb(trainer: L.Trainer) -> None:
    """Close W&B runs so that a later stage in the same process starts a new run."""
    if any(isinstance(logger, WandbLogger) for logger in trainer.loggers):
        import wandb

        wandb.finish()


def _fill_layout(trainer: Namespace, root: Path, version: str) -> None:
    """Put logs and checkpoints inside ``root`` (in place): a CSV logger is always present unless logging is off."""
    if trainer.logger is False:
        return
    loggers = trainer.logger if isinstance(trainer.logger, list) else [trainer.logger]
    loggers = [lg for lg in loggers if isinstance(lg, Namespace)]
    if not any(lg.class_path.endswith("CSVLogger") for lg in loggers):
        csv_logger = Namespace(
            class_path="kr_lightning.loggers.ResumableCSVLogger",
            init_args=Namespace(save_dir=str(root), name="", version=version),
        )
        loggers.insert(0, csv_logger)
    for logger in loggers:
        if logger.class_path.endswith("WandbLogger") and logger.init_args.get("save_dir") in (None, "."):
            logger.init_args.save_dir = str(root)
        if logger.class_path == "kr_lightning.loggers.ResumableCSVLogger" and logger.init_args.save_dir == str(root):
            logger.init_args.version = version  # a run's own config.yaml, reused by another subcommand
    trainer.logger = loggers
    wants_last = listed_last = False
    best: list[Namespace] = []
    for callback in trainer.callbacks or []:
        if isinstance(callback, Namespace) and callback.class_path.endswith("LastCheckpoint"):
            listed_last = True  # by the config (to set its interval), or by a run's saved config.yaml: not added again
            defaults = _last_checkpoint(root / "checkpoints", val_every_epoch=trainer.check_val_every_n_epoch == 1)
            for key, value in vars(defaults.init_args).items():
                if callback.init_args.get(key) is None:
                    setattr(callback.init_args, key, value)
        if isinstance(callback, Namespace) and callback.class_path.endswith("ModelCheckpoint"):
            if callback.init_args.get("dirpath") is None:
                callback.init_args.dirpath = str(root / "checkpoints")
                callback.init_args.enable_version_counter = False
            if callback.init_args.get("monitor"):  # log the best value of what this checkpoint selects on
                best.append(_best_metric(callback.init_args.monitor, callback.init_args.get("mode", "min")))
            if callback.init_args.get("save_last"):
                # Lightning only refreshes last.ckpt when this callback also saved a top-k file; a dedicated
                # callback writes it after every epoch so that a rerun resumes from the latest epoch.
                callback.init_args.save_last = False
                wants_last = True
    present = {
        cb.init_args.monitor
        for cb in trainer.callbacks or []
        if isinstance(cb, Namespace) and cb.class_path.endswith("BestMetric")
    }  # a run's saved config.yaml already lists them
    trainer.callbacks = [*(trainer.callbacks or []), *(b for b in best if b.init_args.monitor not in present)]
    if wants_last and not listed_last:
        trainer.callbacks.append(
            _last_checkpoint(root / "checkpoints", val_every_epoch=trainer.check_val_every_n_epoch == 1)
        )


def _best_metric(monitor: str, mode: str) -> Namespace:
    """A :class:`kr_lightning.callbacks.BestMetric` for ``monitor``: its best value is logged as ``<monitor>_best``."""
    return Namespace(class_path="kr_lightning.callbacks.BestMetric", init_args=Namespace(monitor=monitor, mode=mode))


def _last_checkpoint(folder: Path, val_every_epoch: bool) -> Namespace:
    """``last.ckpt`` after every epoch (after validation when validation runs every epoch)."""
    return Namespace(
        class_path="kr_lightning.callbacks.LastCheckpoint",
        init_args=Namespace(dirpath=str(folder), save_on_train_epoch_end=None if val_every_epoch else True),
    )


RUN_ONLY = ("ckpt_path", "weights_only", "verbose", "overwrite")
QUIET = {
    "logger": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "num_sanity_val_steps": 0,
}


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` merged in, key by key (nested mappings merged, everything else replaced)."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def stage_config(
    recipe: Path, dataset: Mapping[str, Any], *, seed: int, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The config of ``recipe`` applied to ``dataset`` (``data.init_args`` values) with ``seed`` and overrides.

    ``recipe`` is a stage recipe or a finished run's ``config.yaml`` (the recipe it was trained with).
    """
    try:
        config = yaml.safe_load(Path(recipe).read_text())
    except OSError as err:
        raise MissingInputError(f"stage recipe {recipe} cannot be read ({err})") from err
    for key in RUN_ONLY:  # a saved config.yaml also holds the arguments of the command that ran it
        config.pop(key, None)
    config = deep_merge(config, {"data": {"init_args": dict(dataset)}, "seed_everything": seed})
    return deep_merge(config, overrides or {})


def build_stage(
    recipe: Path,
    dataset: Mapping[str, Any],
    *,
    seed: int,
    overrides: Mapping[str, Any] | None = None,
    quiet: bool = False,
) -> KRCLI:
    """Instantiate the model, data module and trainer of a stage (``.model``, ``.datamodule``, ``.trainer``).

    Args:
        recipe: The stage recipe YAML.
        dataset: The data module's dataset options (a data fragment's ``data.init_args``, or
            ``ImageDataModule.dataset_kwargs()``).
        seed: ``seed_everything`` of the stage (its run folder derives from it unless overridden).
        overrides: Config values merged over the recipe, as Python objects, e.g.
            ``{"trainer": {"default_root_dir": "..."}, "data": {"init_args": {"counts": [...]}}}``.
        quiet: No logger, progress bar, model summary or sanity check (reference runs of the privacy audit).
    """
    config = stage_config(recipe, dataset, seed=seed, overrides=overrides)
    if quiet:
        config = deep_merge(config, {"trainer": QUIET})
    return KRCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=None,
        auto_configure_optimizers=False,
        parser_kwargs={"parser_mode": PARSER_MODE},
        run=False,
        args=["--config", yaml.safe_dump(config, sort_keys=False)],
    )
