"""Generation speed-ups and the device checks behind them: ``torch.compile`` backends and native bf16 units.

``ClassConditionalPipeline.optimize`` (:mod:`kr_lightning.models.generator_pipeline`) applies a speed-up only
where these checks say the device supports it (measurements in ``benchmarks/README.md``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

import torch

from kr_lightning.errors import ConfigError


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
