"""The ``python -m kr_lightning`` command tree: LightningCLI stages (fit / validate / test / predict) and tools.

``fit``, ``validate``, ``test`` and ``predict`` go to :class:`kr_lightning.stages.KRCLI`; ``sample``, ``quality``,
``select``, ``mia``, ``report``, ``records`` and ``pipeline`` to jsonargparse over their typed functions. Both parse
configs in the same mode (omegaconf interpolation, see :mod:`kr_lightning.layout`), and a user error from either ends
in one ``kr_lightning: error: ...`` line and exit status 2.
"""

from __future__ import annotations

import inspect
import signal
import sys
import warnings
from collections.abc import Callable
from typing import Any

import lightning as L
from jsonargparse import ArgumentError, auto_cli, set_parsing_settings
from lightning.pytorch.cli import ArgsType, LightningCLI
from omegaconf.errors import InterpolationResolutionError

from kr_lightning.callbacks.run_record import RunRecord
from kr_lightning.errors import ConfigError, KRError, SigtermInterrupts
from kr_lightning.layout import PARSER_MODE, check_fragments
from kr_lightning.stages import KRCLI

DESCRIPTION = (
    "Knowledge Recycling stages. A stage is a recipe applied to a dataset: python -m kr_lightning <command> --config "
    "experiments/recipes/<profile>/<stage>.yaml --config experiments/data/<flag>.yaml"
)


def tool_commands() -> dict[str, Callable[..., Any]]:
    """Commands other than fit / validate / test / predict, each a typed function (jsonargparse ``auto_cli``)."""
    from kr_lightning.distill.selection import select
    from kr_lightning.pipeline import pipeline
    from kr_lightning.privacy.audit import mia
    from kr_lightning.quality.command import quality
    from kr_lightning.records import records
    from kr_lightning.report import report
    from kr_lightning.synthetic_dataset import sample

    return {
        "sample": sample,
        "quality": quality,
        "select": select,
        "mia": mia,
        "report": report,
        "records": records,
        "pipeline": pipeline,
    }


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
    # ${...} interpolation in configs (run folders derived from run_root, the dataset and the seed) is resolved by
    # omegaconf after every source is merged; keys are absolute, as a user reads them in the printed config.
    set_parsing_settings(omegaconf_absolute_to_relative_paths=True)
    with SigtermInterrupts() as stop:
        try:
            check_fragments(argv)
            _dispatch(argv)
        except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM (errors.Terminated; the pipeline forwards it)
            _interrupted(getattr(err, "signum", signal.SIGINT))
        except SystemExit:  # Lightning ends a fit interrupted by SIGTERM with sys.exit(1)
            if stop.received is None:
                raise
            _interrupted(stop.received)
        except ArgumentError as err:
            _argument_error(argv, err)
        except Exception as err:
            if stop.received is not None:  # raised while unwinding the signal (Lightning's teardown can fail there)
                _interrupted(stop.received)
            cause = _user_error(err)
            if cause is None:
                raise
            print(f"kr_lightning: error: {cause}", file=sys.stderr)
            raise SystemExit(2) from err


def _interrupted(signum: int) -> None:
    """Say how to resume and exit with a shell's status for ``signum`` (130 for Ctrl-C, 143 for SIGTERM)."""
    print(
        "\nkr_lightning: interrupted; rerun the same command to resume (fit continues from last.ckpt, select and"
        " mia from their last finished unit, the pipeline skips finished stages)",
        file=sys.stderr,
    )
    raise SystemExit(128 + signum) from None


def _argument_error(argv: list[str], err: ArgumentError) -> None:
    known = argv[:1] if argv and argv[0] in {*tool_commands(), "fit", "validate", "test", "predict"} else []
    command = " ".join(["python -m kr_lightning", *known])
    print(f"kr_lightning: error: {err}\nSee `{command} --help` for the accepted options.", file=sys.stderr)
    raise SystemExit(2) from err


def _user_error(err: BaseException) -> KRError | None:
    """The KRError behind ``err`` (jsonargparse wraps errors raised while it instantiates classes), if any.

    A ``${...}`` that omegaconf cannot resolve (a missing key or environment variable) is a config error too.
    """
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, KRError):
            return current
        if isinstance(current, InterpolationResolutionError):
            reason = str(current.msg).splitlines()[0]
            return ConfigError(f"cannot resolve the config value {current.full_key}: {reason}")
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


STAGE_COMMANDS = {
    "fit": "Train a stage (generator, teacher or student) into its run folder; a rerun resumes from last.ckpt.",
    "validate": "Evaluate a stage's best checkpoint on the real val split.",
    "test": "Evaluate a stage's best (val-selected) checkpoint once on the real test split; writes test/.",
    "predict": "Class probabilities of a stage's best checkpoint on the real test split.",
}


def command_help() -> str:
    """``python -m kr_lightning --help``: every command with a one-line description."""
    assert set(STAGE_COMMANDS) == set(LightningCLI.subcommands()), "describe every LightningCLI subcommand"
    lines = [f"usage: python -m kr_lightning <command> [--config FILE ...] [options]\n\n{DESCRIPTION}\n", "commands:"]
    tools = {name: inspect.getdoc(function).splitlines()[0] for name, function in tool_commands().items()}
    for name, summary in {**STAGE_COMMANDS, **tools}.items():
        lines.append(f"  {name:<10} {summary}")
    lines.append("\n`python -m kr_lightning <command> --help` lists a command's options.")
    return "\n".join(lines)


def _dispatch(argv: list[str]) -> None:
    tools = tool_commands()
    if not argv or argv[0] in ("-h", "--help"):
        print(command_help())
        return
    if argv[0] in tools:
        auto_cli(
            tools[argv[0]],
            args=argv[1:],
            parser_mode=PARSER_MODE,
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
        parser_kwargs={"prog": "python -m kr_lightning", "description": DESCRIPTION, "parser_mode": PARSER_MODE},
        args=argv,
    )
