"""Step and guidance distillation targets: one DDIM step of a student = several guided steps of a teacher sampler.

A teacher sampler (e.g. DPM-Solver++ with 10 steps, classifier-free guidance on every step: 20 UNet rows per image)
is distilled into a student UNet sampled with DDIM at fewer steps and **no guidance** (one row per step): the
student's prediction at the teacher's state ``x_a`` (timestep ``t_a``) is trained so that one DDIM step lands on the
teacher's state ``x_b`` at the student's next timestep (the final image after the last step). This is progressive
distillation's target (Salimans & Ho, ICLR 2022, Algorithm 2) on the teacher's own sampling path, with guidance
folded in as in Meng et al. (CVPR 2023), in one stage.

A deterministic DDIM step (``eta = 0``, no clipping, no thresholding) is linear in the state and the model output,
``x_b = a_k x_a + b_k out`` for step ``k``, whatever the prediction type. The coefficients are read off diffusers'
own ``DDIMScheduler.step`` (:func:`ddim_step_coefficients`), so the target ``out* = (x_b - a_k x_a) / b_k`` is exact
for the scheduler that samples the student.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from diffusers import DDIMScheduler

from kr_lightning.errors import ConfigError


def student_scheduler(config: Mapping[str, Any], steps: int) -> DDIMScheduler:
    """The student's DDIM scheduler (``steps`` inference steps): the teacher's noise schedule, without clipping.

    Clipping (or thresholding) the ``x0`` prediction would make a step non-linear and stop it from reaching the
    teacher's state where that needs an ``x0`` outside ``[-1, 1]`` (early, noisy steps).
    """
    if steps < 1:
        raise ConfigError(f"student steps must be >= 1; got {steps}")
    scheduler = DDIMScheduler.from_config(config, clip_sample=False, thresholding=False)
    scheduler.set_timesteps(steps)
    return scheduler


def ddim_step_coefficients(scheduler: DDIMScheduler) -> tuple[torch.Tensor, torch.Tensor]:
    """``(a, b)`` of shape ``(steps,)`` with ``DDIMScheduler.step(out, t_k, x).prev_sample == a[k] x + b[k] out``."""
    if scheduler.config.clip_sample or scheduler.config.thresholding:
        raise ConfigError("step distillation needs a DDIM scheduler without clip_sample / thresholding (linear steps)")
    one, zero = torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    a, b = [], []
    for t in scheduler.timesteps:
        a.append(scheduler.step(zero, t, one, eta=0.0).prev_sample.item())
        b.append(scheduler.step(one, t, zero, eta=0.0).prev_sample.item())
    a_t, b_t = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    if bool((b_t.abs() < 1e-8).any()):
        raise ConfigError(f"a DDIM step ignores the model output at steps {(b_t.abs() < 1e-8).nonzero().tolist()}")
    return a_t, b_t


def nested_positions(teacher_timesteps: Sequence[int], student_timesteps: Sequence[int]) -> list[int]:
    """Where each student timestep sits in the teacher's sampling path (the teacher's state there is the input).

    Raises:
        ConfigError: A student timestep the teacher never visits (the grids are not nested).
    """
    teacher = [int(t) for t in teacher_timesteps]
    missing = [int(t) for t in student_timesteps if int(t) not in teacher]
    if missing:
        raise ConfigError(
            f"the student's timesteps {list(map(int, student_timesteps))} must all lie on the teacher's path "
            f"{teacher}; {missing} do not. With trailing spacing, use teacher steps = a multiple of student steps "
            "(e.g. 10 and 5)."
        )
    return [teacher.index(int(t)) for t in student_timesteps]


def step_target(x_a: torch.Tensor, x_b: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The model output that takes ``x_a`` to ``x_b`` in one linear step ``x_b = a x_a + b out``.

    Args:
        x_a: ``(B, C, H, W)`` states at the student's timesteps.
        x_b: ``(B, C, H, W)`` the teacher's states one student step later.
        a: ``(B,)`` state coefficient of each row's step.
        b: ``(B,)`` output coefficient of each row's step.
    """
    shape = (-1, *([1] * (x_a.dim() - 1)))
    a, b = a.to(x_a).reshape(shape), b.to(x_a).reshape(shape)
    return (x_b - a * x_a) / b
