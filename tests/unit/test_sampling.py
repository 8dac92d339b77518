import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from conftest import tiny_unet
from kr_lightning.errors import ConfigError
from kr_lightning.models.sampling import (
    check_interval,
    guided_prediction,
    guided_steps,
    knobs_name,
    make_scheduler,
    noise_levels,
    sample,
    unet_rows,
)
from kr_lightning.models.unet import build_unet, padded_size
from kr_lightning.seeding import SAMPLING, make_rng

K = 3


@pytest.fixture(scope="module")
def unet():
    net = tiny_unet(num_classes=K, image_size=8)
    return net.eval()


@pytest.fixture(scope="module")
def config():
    return dict(DDPMScheduler(beta_schedule="squaredcos_cap_v2", timestep_spacing="trailing").config)


def draw(unet, config, **kw):
    labels = torch.tensor([0, 1, 2, 1, 0, 2])
    args = {"steps": 4, "guidance": 2.0, "null_label": K, "rng": make_rng(7, stream=SAMPLING), "sampler": "ddim"} | kw
    return sample(unet, config, labels, **args)


def test_same_rng_same_images_and_range(unet, config):
    a, b = draw(unet, config), draw(unet, config)
    assert torch.equal(a, b) and a.shape == (6, 1, 8, 8)
    assert a.min() >= -1 and a.max() <= 1
    assert not torch.equal(a, draw(unet, config, rng=make_rng(8, stream=SAMPLING)))


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpmsolver++", "unipc"])
def test_every_sampler_is_deterministic_given_rng(unet, config, sampler):
    a, b = draw(unet, config, sampler=sampler), draw(unet, config, sampler=sampler)
    assert torch.equal(a, b) and torch.isfinite(a).all()


def test_ddim_images_do_not_depend_on_batching(unet, config):
    torch.testing.assert_close(draw(unet, config, batch_size=6), draw(unet, config, batch_size=4), atol=1e-5, rtol=0)


def test_batched_cfg_equals_two_forward_cfg(unet):
    x, t, y = torch.randn(4, 1, 8, 8), torch.tensor(500), torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        cond = unet(x, t, class_labels=y).sample
        uncond = unet(x, t, class_labels=torch.full_like(y, K)).sample
        ours = guided_prediction(unet, x, t, y, 3.0, K)
    torch.testing.assert_close(ours, uncond + 3.0 * (cond - uncond), atol=1e-5, rtol=1e-5)


def test_guidance_one_is_plain_conditional(unet):
    x, t, y = torch.randn(4, 1, 8, 8), torch.tensor(300), torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        cond = unet(x, t, class_labels=y).sample
        both = unet(torch.cat([x, x]), t, class_labels=torch.cat([y, torch.full_like(y, K)])).sample
        c, u = both.chunk(2)
        torch.testing.assert_close(guided_prediction(unet, x, t, y, 1.0, K), cond)
        torch.testing.assert_close(u + 1.0 * (c - u), cond, atol=1e-5, rtol=1e-5)


def test_bf16_autocast_keeps_float32_outputs_close_to_float32_sampling(unet, config):
    exact = draw(unet, config, sampler="dpmsolver++")
    bf16 = draw(unet, config, sampler="dpmsolver++", autocast=torch.bfloat16)
    assert bf16.dtype == torch.float32 and bf16.shape == exact.shape
    assert not torch.equal(bf16, exact)  # the forwards really ran in bfloat16
    assert (bf16 - exact).abs().mean() < 0.05 and bf16.min() >= -1 and bf16.max() <= 1
    x, t, y = torch.randn(4, 1, 8, 8), torch.tensor(500), torch.tensor([0, 1, 2, 0])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert guided_prediction(unet, x, t, y, 3.0, K).dtype == torch.float32


def test_guidance_changes_the_images(unet, config):
    assert not torch.allclose(draw(unet, config, guidance=1.0), draw(unet, config, guidance=4.0))


def test_ddim_matches_reference_loop_against_diffusers(unet, config):
    labels = torch.tensor([0, 1, 2, 1])
    ours = sample(
        unet, config, labels, steps=5, guidance=1.0, null_label=K, rng=make_rng(3, stream=SAMPLING), sampler="ddim"
    )
    # reference: written directly against DDIMScheduler.step
    x = torch.randn((4, 1, 8, 8), generator=make_rng(3, stream=SAMPLING))
    scheduler = DDIMScheduler.from_config(config)
    scheduler.set_timesteps(5)
    with torch.no_grad():
        for t in scheduler.timesteps:
            eps = unet(x, t, class_labels=labels).sample
            x = scheduler.step(eps, t, x, eta=0.0).prev_sample
    torch.testing.assert_close(ours, x.clamp(-1, 1), atol=1e-5, rtol=0)


def test_padding_and_crop_for_28px():
    assert padded_size(28, 3) == 28 and padded_size(28, 4) == 32 and padded_size(8, 2) == 8
    net = build_unet(
        num_classes=2,
        in_channels=1,
        image_size=28,
        block_out_channels=[8, 8, 8, 8],
        layers_per_block=1,
        attention_levels=[False] * 4,
        norm_num_groups=4,
        attention_head_dim=4,
        dropout=0.0,
    )
    assert net.config.sample_size == 32
    config = dict(DDPMScheduler().config)
    out = sample(
        net,
        config,
        torch.tensor([0, 1]),
        steps=1,
        guidance=1.5,
        null_label=2,
        rng=make_rng(0, stream=SAMPLING),
        image_size=28,
    )
    assert out.shape == (2, 1, 28, 28)


def test_unet_factory_checks_its_knobs():
    with pytest.raises(ValueError, match="one flag per level"):
        build_unet(
            num_classes=2,
            in_channels=1,
            image_size=8,
            block_out_channels=[8, 16],
            layers_per_block=1,
            attention_levels=[False],
            norm_num_groups=4,
            attention_head_dim=4,
            dropout=0.0,
        )
    with pytest.raises(ValueError, match="must divide"):
        build_unet(
            num_classes=2,
            in_channels=1,
            image_size=8,
            block_out_channels=[8, 12],
            layers_per_block=1,
            attention_levels=[False, False],
            norm_num_groups=8,
            attention_head_dim=4,
            dropout=0.0,
        )


def test_dpmsolver_clips_the_x0_prediction_like_ddim(config):
    from kr_lightning.models.sampling import make_scheduler

    dpm = make_scheduler(config, "dpmsolver++")
    assert dpm.config.thresholding and dpm.config.sample_max_value == config["clip_sample_range"]
    assert dpm.config.algorithm_type == "dpmsolver++"


def test_few_step_samplers_do_not_blow_up_before_the_final_clamp(unet, config):
    """The raw (unclamped) DPM-Solver++ state stays in the data range when x0 is clipped at every step."""
    from kr_lightning.models.sampling import make_scheduler

    scheduler = make_scheduler(config, "dpmsolver++")
    scheduler.set_timesteps(5)
    x = torch.randn((4, 1, 8, 8), generator=make_rng(0, stream=SAMPLING))
    labels = torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler.step(guided_prediction(unet, x, t, labels, 2.0, K), t, x).prev_sample
    assert x.abs().max() < 1.5


def rows_per_forward(unet):
    """Count the UNet rows each forward of ``unet`` runs (a forward hook; removed by the caller)."""
    rows: list[int] = []
    handle = unet.register_forward_hook(lambda _m, args, _out: rows.append(len(args[0])))
    return rows, handle


@pytest.mark.parametrize("sampler", ["ddim", "dpmsolver++", "unipc"])
def test_guidance_interval_bounds_select_the_steps(unet, config, sampler):
    every = draw(unet, config, sampler=sampler)
    torch.testing.assert_close(draw(unet, config, sampler=sampler, guidance_interval=(0.0, float("inf"))), every)
    none = draw(unet, config, sampler=sampler, guidance_interval=(1e6, 1e7))  # above every step's sigma
    torch.testing.assert_close(none, draw(unet, config, sampler=sampler, guidance=1.0))
    assert not torch.allclose(none, every)
    rows, handle = rows_per_forward(unet)
    try:
        draw(unet, config, sampler=sampler, guidance_interval=(0.5, 3.0))
    finally:
        handle.remove()
    scheduler = make_scheduler(config, sampler)
    scheduler.set_timesteps(4)
    sigmas = noise_levels(scheduler)
    guided = [0.5 < s <= 3.0 for s in sigmas.tolist()]
    assert rows == [12 if g else 6 for g in guided] and 0 < sum(guided) < 4
    assert unet_rows(4, sum(guided)) == sum(rows) // 6


def test_noise_levels_follow_alpha_bar(config):
    scheduler = make_scheduler(config, "dpmsolver++")
    scheduler.set_timesteps(5)
    alpha_bar = scheduler.alphas_cumprod[scheduler.timesteps.long()]
    sigmas = noise_levels(scheduler)
    torch.testing.assert_close(sigmas.float(), ((1 - alpha_bar) / alpha_bar).sqrt().float())
    assert torch.all(sigmas[:-1] > sigmas[1:])  # noise decreases along the trajectory
    assert guided_steps(sigmas, None) == [True] * 5
    assert guided_steps(sigmas, (float(sigmas[2]), float(sigmas[1]))) == [False, True, False, False, False]


@pytest.mark.parametrize("interval", [(1.0, 0.5), (-1.0, 2.0), (2.0, 2.0), (1.0,)])
def test_bad_guidance_interval_is_one_clear_error(interval):
    with pytest.raises(ConfigError, match="guidance_interval must be"):
        check_interval(interval)


def test_knobs_name_tags_the_interval():
    assert knobs_name("dpmsolver++", 10, 2.0) == "dpmsolver++-s10-g2"
    assert knobs_name("unipc", 5, 2.5, (0.3, 3.0)) == "unipc-s5-g2.5-i0.3-3"
