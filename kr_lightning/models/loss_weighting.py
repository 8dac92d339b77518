"""Per-sample weights of the diffusion loss over timesteps: Min-SNR-gamma (Hang et al., ICCV 2023).

The denoising MSE of every timestep is a task of its own; low-noise timesteps (high SNR) dominate the gradient
while the class and the global layout are decided at high noise. Min-SNR-gamma clamps each timestep's effective
weight at ``gamma``. Written for the target the UNet predicts, as in diffusers' ``train_text_to_image.py``:
``min(SNR, gamma) / SNR`` for the noise, ``min(SNR, gamma) / (SNR + 1)`` for the velocity and ``min(SNR, gamma)``
for the clean sample. The SNR itself comes from ``diffusers.training_utils.compute_snr``.
"""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler
from diffusers.training_utils import compute_snr


def min_snr_weights(
    scheduler: DDPMScheduler, timesteps: torch.Tensor, gamma: float, prediction_type: str
) -> torch.Tensor:
    """``(B,)`` float32 loss weights for ``timesteps`` under Min-SNR-``gamma`` for ``prediction_type``."""
    snr = compute_snr(scheduler, timesteps)
    clamped = torch.clamp(snr, max=gamma)
    if prediction_type == "epsilon":
        return torch.where(snr > 0, clamped / snr.clamp_min(1e-20), torch.ones_like(snr))
    if prediction_type == "v_prediction":
        return clamped / (snr + 1.0)
    return clamped
