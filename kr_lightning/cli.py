"""The ``python -m kr_lightning`` command: LightningCLI for fit / validate / test / predict, plus tool commands.

Run layout: everything a stage writes goes under ``trainer.default_root_dir`` (the *run folder*):
``config.yaml`` and ``run.json`` (full config, git SHA, versions), ``metrics.csv`` (CSV logger),
``checkpoints/{best,last}.ckpt`` and, after ``test``, ``test/`` with ``test_metrics.json`` and
``test_predictions.npz``. Unless the config says otherwise the CLI fills in that layout: a CSV logger writing to
the run folder and checkpoint callbacks writing to ``<run folder>/checkpoints``.
"""

from __future__ import annotations

import inspect
import os
import shutil
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
from jsonargparse import ArgumentError, Namespace, auto_cli
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import WandbLogger

from kr_lightning.callbacks.run_record import RunRecord
from kr_lightning.errors import CheckpointError, KRError, MissingInputError, RunExistsError
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
        """Link the dataset's classes, channels and image size into the model."""
        for key in LINKED:
            parser.link_arguments(f"data.{key}", f"model.init_args.{key}", apply_on="instantiate")
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
        _fill_layout(config.trainer, root, version=self.subcommand if self.subcommand not in ("fit", None) else "")
        if self.subcommand and config.get("weights_only") is None:
            config.weights_only = True  # our checkpoints hold tensors and plain types only: never unpickle code
        if self.subcommand == "fit" and config.get("ckpt_path") is None:
            _guard_finished_run(root, overwrite=bool(config.get("overwrite")))
        if self.subcommand and config.get("ckpt_path") is None:
            if self.subcommand == "fit" and (root / "checkpoints" / "last.ckpt").is_file():
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


def _guard_finished_run(root: Path, overwrite: bool) -> None:
    """Refuse to train into a finished run unless ``overwrite``, which deletes that run folder first."""
    record = root / "run.json"
    if not record.is_file() or "finished" not in read_json(record):
        return
    if not overwrite:
        raise RunExistsError(
            f"{root} already holds a finished run (see {record}); nothing was changed. Choose another "
            "--trainer.default_root_dir, or pass --overwrite=true to delete it and train again."
        )
    if os.environ.get("LOCAL_RANK", "0") == "0":  # DDP re-launches the command on every rank
        shutil.rmtree(root)
    print(f"kr_lightning: --overwrite=true: deleted the finished run in {root}")


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
    trainer.logger = loggers
    wants_last = False
    for callback in trainer.callbacks or []:
        if isinstance(callback, Namespace) and callback.class_path.endswith("ModelCheckpoint"):
            if callback.init_args.get("dirpath") is None:
                callback.init_args.dirpath = str(root / "checkpoints")
                callback.init_args.enable_version_counter = False
            if callback.init_args.get("save_last"):
                # Lightning only refreshes last.ckpt when this callback also saved a top-k file; a dedicated
                # callback writes it after every epoch so that a rerun resumes from the latest epoch.
                callback.init_args.save_last = False
                wants_last = True
    if wants_last:
        trainer.callbacks.append(
            _last_checkpoint(root / "checkpoints", val_every_epoch=trainer.check_val_every_n_epoch == 1)
        )


def _last_checkpoint(folder: Path, val_every_epoch: bool) -> Namespace:
    """``last.ckpt`` after every epoch (after validation when validation runs every epoch)."""
    return Namespace(
        class_path="kr_lightning.callbacks.LastCheckpoint",
        init_args=Namespace(dirpath=str(folder), save_on_train_epoch_end=None if val_every_epoch else True),
    )


DESCRIPTION = (
    "Knowledge Recycling stages. LightningCLI subcommands: fit, validate, test, predict (one YAML per stage under "
    "experiments/). Tool commands: sample, select, mia, report, pipeline (python -m kr_lightning <command> --help)."
)


def tool_commands() -> dict[str, Callable[..., Any]]:
    """Commands other than fit / validate / test / predict, each a typed function (jsonargparse ``auto_cli``)."""
    from kr_lightning.distill.selection import select
    from kr_lightning.pipeline import pipeline
    from kr_lightning.privacy.audit import mia
    from kr_lightning.report import report
    from kr_lightning.synthetic_dataset import sample

    return {"sample": sample, "select": select, "report": report, "pipeline": pipeline, "mia": mia}


def main(args: ArgsType = None) -> None:
    """Entry point of ``python -m kr_lightning``.

    ``fit``, ``validate``, ``test`` and ``predict`` go to LightningCLI; ``sample`` (and the other tool commands)
    to jsonargparse over their typed functions.

    Args:
        args: Command-line arguments (``sys.argv[1:]`` when ``None``); a list lets tests call the CLI in process.
    """
    # Injected backbones are stored in the hyperparameters on purpose (checkpoints rebuild themselves from the
    # parsed config); Lightning's advice to ignore nn.Module hyperparameters does not apply here.
    warnings.filterwarnings("ignore", message=r"Attribute '.*' is an instance of `nn.Module`")
    # Lightning 2.6 still calls jsonargparse APIs deprecated in 4.49; nothing a user can act on.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"lightning\.pytorch\.cli")
    # stages built in process (privacy reference runs) pass args= while sys.argv holds the outer command
    warnings.filterwarnings("ignore", message=r"LightningCLI's args parameter is intended to run from within Python")
    argv = list(sys.argv[1:] if args is None else args)
    try:
        _dispatch(argv)
    except KeyboardInterrupt:
        print(
            "\nkr_lightning: interrupted; rerun the same command to resume (fit continues from last.ckpt, select and"
            " mia from their last finished unit, the pipeline skips finished stages)",
            file=sys.stderr,
        )
        raise SystemExit(130) from None
    except ArgumentError as err:
        known = argv[:1] if argv and argv[0] in {*tool_commands(), "fit", "validate", "test", "predict"} else []
        command = " ".join(["python -m kr_lightning", *known])
        print(f"kr_lightning: error: {err}\nSee `{command} --help` for the accepted options.", file=sys.stderr)
        raise SystemExit(2) from err
    except Exception as err:
        cause = _user_error(err)
        if cause is None:
            raise
        print(f"kr_lightning: error: {cause}", file=sys.stderr)
        raise SystemExit(2) from err


def _user_error(err: BaseException) -> KRError | None:
    """The KRError behind ``err`` (jsonargparse wraps errors raised while it instantiates classes), if any."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, KRError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _dispatch(argv: list[str]) -> None:
    tools = tool_commands()
    if argv and argv[0] in tools:
        auto_cli(
            tools[argv[0]],
            args=argv[1:],
            parser_mode="yaml",
            prog=f"python -m kr_lightning {argv[0]}",
            exit_on_error=False,
        )
        return
    KRCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=RunRecord,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
        parser_kwargs={"prog": "python -m kr_lightning", "description": DESCRIPTION},
        args=argv,
    )
