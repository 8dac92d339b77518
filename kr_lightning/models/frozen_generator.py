"""FrozenGenerator: a trained generator as a sampler, loaded from a checkpoint or a diffusers export folder.

Export layout (``save_pretrained`` of diffusers, safetensors weights)::

    export/
      unet/config.json, unet/diffusion_pytorch_model.safetensors
      scheduler/scheduler_config.json
      kr_generator.json      # classes, channels, image size, default sampling knobs
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from diffusers import DDPMScheduler, UNet2DModel

from kr_lightning import artifacts
from kr_lightning.errors import CheckpointError, ConfigError, MissingInputError
from kr_lightning.models.sampling import SamplerKind, sample
from kr_lightning.models.unet import build_unet

META_FILE = "kr_generator.json"
UNET_KEYS = (
    "block_out_channels",
    "layers_per_block",
    "attention_levels",
    "norm_num_groups",
    "attention_head_dim",
    "dropout",
)
SCHEDULER_KEYS = ("num_train_timesteps", "beta_schedule", "prediction_type", "timestep_spacing")


def compile_backend_missing(device: torch.device) -> str | None:
    """Why ``torch.compile`` (inductor) cannot run on ``device``, or ``None`` when it can."""
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "Triton is not installed (pip install triton)"
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except Exception as err:  # noqa: BLE001 - inductor raises its own InvalidCxxCompiler
        return f"no C++ compiler found for inductor ({type(err).__name__}); install g++ or set CXX"
    return None


GenPrecision = Literal["32-true", "bf16-mixed"]
GEN_PRECISIONS: tuple[str, ...] = get_args(GenPrecision)


def wants_bf16(precision: str) -> bool:
    """Whether a ``32-true`` / ``bf16-mixed`` precision setting asks for bf16 generation.

    Raises:
        ConfigError: Any other value.
    """
    if precision not in GEN_PRECISIONS:
        raise ConfigError(f"generator precision must be one of {GEN_PRECISIONS}; got {precision!r}")
    return precision == "bf16-mixed"


def cpu_has_native_bf16(capabilities: Mapping[str, Any] | None = None) -> bool:
    """Whether the CPU computes in bf16 natively: AVX512-BF16 or AMX on x86, the BF16 extension on ARM.

    oneDNN's own check (``torch.ops.mkldnn._is_mkldnn_bf16_supported``) also says yes for any AVX-512 CPU, where
    bf16 is emulated with float32 instructions and is slower than float32 (measured in ``benchmarks/README.md``).
    """
    if capabilities is None:  # torch.cpu.get_capabilities is new in recent torch; without it, say no (float32)
        getter = getattr(torch.cpu, "get_capabilities", None)
        capabilities = getter() if getter is not None else {}
    return any(capabilities.get(flag, False) for flag in ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16"))


def bf16_unsupported(device: torch.device) -> str | None:
    """Why bfloat16 autocast would not be fast on ``device`` (no native bf16 units), or ``None`` when it is."""
    if device.type == "cuda":
        return None if torch.cuda.is_bf16_supported(including_emulation=False) else "this GPU has no native bf16"
    if device.type == "cpu":
        if cpu_has_native_bf16():
            return None
        return "this CPU has no bf16 units (x86: AVX512-BF16 or AMX), so bf16 would be emulated and slower"
    return f"bf16 autocast is not set up for {device.type} devices"


@dataclass
class FrozenGenerator:
    """A class-conditional UNet plus its noise-schedule config, in eval mode and without gradients.

    Attributes:
        unet: Denoiser; class index ``num_classes`` is the "no class" token.
        scheduler_config: Config of the training ``DDPMScheduler``.
        num_classes: Number of classes K.
        in_channels: Image channels.
        image_size: Side of the generated images (the UNet may work on a padded size).
        sample_steps: Default number of sampler steps.
        sample_guidance: Default guidance scale.
        sampler: Default sampler kind.
        source: Where it was loaded from (for messages and records).
        autocast: dtype the UNet forwards run in under ``torch.autocast`` (``None``: its own float32); set by
            :meth:`optimize`.
    """

    unet: UNet2DModel
    scheduler_config: dict[str, Any]
    num_classes: int
    in_channels: int
    image_size: int
    sample_steps: int = 20
    sample_guidance: float = 2.0
    sampler: SamplerKind = "ddim"
    source: str = field(default="")
    autocast: torch.dtype | None = None

    @property
    def device(self) -> torch.device:
        """Device of the UNet."""
        return self.unet.device

    def optimize(self, *, channels_last: bool = False, compile: bool = False, bf16: bool = False) -> FrozenGenerator:
        """Speed up sampling in place: channels-last convolutions, ``torch.compile`` of the UNet, bf16 autocast.

        Channels-last and compile keep the images to float rounding (~2e-3 per pixel, see
        ``benchmarks/sampling.py``). bf16 autocast changes them by ~1e-2 per pixel on average (measurably, not
        bitwise, equivalent: ``benchmarks/README.md`` gives the CAS it keeps); it is applied only where the device
        has native bf16 units, else it warns and stays float32. Compilation costs tens of seconds once, so it pays
        off for repeated generation (GKD regeneration), not for a single grid. Where inductor has no backend (no
        C++ compiler on a CPU machine, no Triton on a GPU one) it warns and stays eager.
        """
        if channels_last:
            self.unet.to(memory_format=torch.channels_last)
        if bf16:
            unsupported = bf16_unsupported(self.device)
            if unsupported:
                warnings.warn(f"bf16 sampling skipped: {unsupported}; sampling stays float32.", stacklevel=2)
            else:
                self.autocast = torch.bfloat16
        if compile and not isinstance(self.unet, torch._dynamo.eval_frame.OptimizedModule):
            missing = compile_backend_missing(self.device)
            if missing:
                warnings.warn(f"torch.compile skipped: {missing}; sampling runs eagerly (same images).", stacklevel=2)
            else:
                self.unet = torch.compile(self.unet, dynamic=False)
        return self

    def to(self, device: torch.device | str) -> FrozenGenerator:
        """Move the UNet (in place) and return ``self``."""
        self.unet.to(device)
        return self

    def sample(
        self,
        labels: torch.Tensor,
        rng: torch.Generator,
        *,
        steps: int | None = None,
        guidance: float | None = None,
        sampler: SamplerKind | None = None,
        batch_size: int = 256,
        progress: bool = False,
    ) -> torch.Tensor:
        """Images ``(N, C, image_size, image_size)`` in ``[-1, 1]`` for class indices ``labels``; see ``sample``."""
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes}); got [{labels.min()}, {labels.max()}]")
        was_training = self.unet.training
        self.unet.eval()
        try:
            return self._sample(labels, rng, steps, guidance, sampler, batch_size, progress)
        finally:
            self.unet.train(was_training)

    def _sample(
        self,
        labels: torch.Tensor,
        rng: torch.Generator,
        steps: int | None,
        guidance: float | None,
        sampler: SamplerKind | None,
        batch_size: int,
        progress: bool,
    ) -> torch.Tensor:
        return sample(
            self.unet,
            self.scheduler_config,
            labels,
            steps=self.sample_steps if steps is None else steps,
            guidance=self.sample_guidance if guidance is None else guidance,
            sampler=self.sampler if sampler is None else sampler,
            null_label=self.num_classes,
            rng=rng,
            batch_size=batch_size,
            image_size=self.image_size,
            autocast=self.autocast,
            progress=progress,
        )

    def meta(self) -> dict[str, Any]:
        """What ``kr_generator.json`` records."""
        return {
            "format_version": 1,
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "image_size": self.image_size,
            "sample_steps": self.sample_steps,
            "sample_guidance": self.sample_guidance,
            "sampler": self.sampler,
        }

    def export(self, folder: str | Path) -> Path:
        """Write the diffusers export to ``folder`` atomically (a complete folder or the previous one)."""
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            self.unet.save_pretrained(tmp / "unet", safe_serialization=True)
            DDPMScheduler.from_config(self.scheduler_config).save_pretrained(tmp / "scheduler")
            artifacts.write_json(tmp / META_FILE, self.meta())
            old = folder.with_name(f".{folder.name}.old")
            if folder.exists():
                folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return folder

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> FrozenGenerator:
        """Load from a ``DiffusionGenerator`` checkpoint (``.ckpt``) or an export folder.

        Checkpoints are read with ``torch.load(weights_only=True)`` and exports with safetensors: neither runs
        code from the file.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: ``path`` is not a generator checkpoint or export.
        """
        path = Path(path)
        if path.is_dir():
            generator = cls._from_export(path)
        elif path.is_file():
            generator = cls._from_checkpoint(path)
        else:
            raise MissingInputError(
                f"generator not found: {path} (expected a DiffusionGenerator .ckpt or an export folder)"
            )
        generator.unet.eval().requires_grad_(False)
        return generator.to(device)

    @classmethod
    def _from_export(cls, folder: Path) -> FrozenGenerator:
        meta_path = folder / META_FILE
        if not meta_path.is_file() or not (folder / "unet").is_dir():
            raise CheckpointError(
                f"{folder} is not a kr_lightning generator export (expected {META_FILE}, unet/ and scheduler/); "
                "point to the `export` folder of a generator run or to one of its .ckpt files"
            )
        meta = json.loads(meta_path.read_text())
        unet = UNet2DModel.from_pretrained(folder / "unet", use_safetensors=True, low_cpu_mem_usage=False)
        scheduler = DDPMScheduler.from_pretrained(folder / "scheduler")
        return cls._assemble(unet, scheduler, meta, folder)

    @classmethod
    def _from_checkpoint(cls, path: Path) -> FrozenGenerator:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises several types for corrupt or foreign files
            raise CheckpointError(f"cannot read checkpoint {path}: {err}") from err
        hp = ckpt.get("hyper_parameters", {}) if isinstance(ckpt, dict) else {}
        state = ckpt.get("state_dict", {}) if isinstance(ckpt, dict) else {}
        if not any(k.startswith("unet.") for k in state) or "block_out_channels" not in hp:
            kind = hp.get("_class_path", "unknown kind")
            raise CheckpointError(
                f"{path} is not a DiffusionGenerator checkpoint (it holds {kind}); pass the generator run's "
                "checkpoint (runs/<dataset>/generator/checkpoints/*.ckpt) or its export folder"
            )
        unet = build_unet(
            num_classes=hp["num_classes"],
            in_channels=hp["in_channels"],
            image_size=hp["image_size"],
            **{k: hp[k] for k in UNET_KEYS},
        )
        unet.load_state_dict({k[len("unet.") :]: v for k, v in state.items() if k.startswith("unet.")})
        scheduler = DDPMScheduler(clip_sample=True, **{k: hp[k] for k in SCHEDULER_KEYS})
        return cls._assemble(unet, scheduler, hp, path)

    @classmethod
    def _assemble(
        cls, unet: UNet2DModel, scheduler: DDPMScheduler, meta: dict[str, Any], source: Path
    ) -> FrozenGenerator:
        """A FrozenGenerator from a UNet, its scheduler and the metadata keys of ``kr_generator.json``."""
        keys = ("num_classes", "in_channels", "image_size", "sample_steps", "sample_guidance", "sampler")
        return cls(unet=unet, scheduler_config=dict(scheduler.config), source=str(source), **{k: meta[k] for k in keys})
