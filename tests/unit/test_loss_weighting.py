"""Min-SNR-gamma weights against their definition on the cosine schedule."""

import pytest
import torch
from diffusers import DDPMScheduler

from kr_lightning.models.loss_weighting import min_snr_weights


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_min_snr_weights_follow_the_definition(kind):
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    t = torch.tensor([0, 50, 200, 500, 999])
    abar = scheduler.alphas_cumprod[t].double()
    snr = abar / (1 - abar)
    clamped = snr.clamp(max=5.0)
    expected = {"epsilon": clamped / snr, "v_prediction": clamped / (snr + 1), "sample": clamped}[kind]
    assert torch.allclose(min_snr_weights(scheduler, t, 5.0, kind).double(), expected, rtol=1e-4)
    if kind == "epsilon":  # high-SNR (low-noise) steps are down-weighted, the others keep weight 1
        weights = min_snr_weights(scheduler, t, 5.0, kind)
        assert weights[0] < 0.01 and weights[-1] == pytest.approx(1.0)
