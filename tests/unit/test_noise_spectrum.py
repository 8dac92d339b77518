import importlib.util

import pytest
import torch

from conftest import REPO

spec = importlib.util.spec_from_file_location("noise_spectrum", REPO / "experiments/ablations/noise_spectrum.py")
noise_spectrum = importlib.util.module_from_spec(spec)
spec.loader.exec_module(noise_spectrum)


def test_radial_power_of_white_noise_is_flat_at_its_variance_times_the_pixel_count():
    x = 0.1 * torch.randn(2000, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    power = noise_spectrum.radial_power(x)
    # Parseval: a pixel variance of 0.01 on 784 pixels is 7.84 of power at every frequency (the mean removed: ring 0
    # loses the zero frequency only)
    assert power[1:8] == pytest.approx(torch.full((7,), 7.84, dtype=torch.float64), rel=0.05)
    smooth = noise_spectrum.radial_power(torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1))
    assert (smooth[5:8] < 0.3 * power[5:8]).all()  # a blur takes power from the high rings


def test_fit_recovers_the_sd_of_a_deficit_shaped_like_the_noise_and_its_misfit_grows_with_a_wrong_shape():
    unit = torch.linspace(10.0, 1.0, 10, dtype=torch.float64)
    sd, misfit = noise_spectrum.fit(0.09**2 * unit, unit)
    assert sd == pytest.approx(0.09) and misfit == pytest.approx(0.0, abs=1e-9)
    _, flat_misfit = noise_spectrum.fit(0.09**2 * unit, torch.ones(10, dtype=torch.float64))
    assert flat_misfit > 0.3
