"""Few-step generator: exact step targets, the teacher's paths, and the distilled sampler end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import DDPMScheduler

from kr_lightning.errors import ConfigError
from kr_lightning.fewstep.targets import ddim_step_coefficients, nested_positions, step_target, student_scheduler
from kr_lightning.models.loading import load_generator
from kr_lightning.models.sampling import make_scheduler, sample, sample_trajectory
from kr_lightning.seeding import SAMPLING, make_rng
from tests.conftest import CONFIGS


@pytest.mark.parametrize("prediction_type", ["v_prediction", "epsilon"])
def test_targets_make_diffusers_ddim_retrace_any_path(prediction_type):
    """Feeding DDIMScheduler.step the targets of a path, from its first state, lands on every later state."""
    config = DDPMScheduler(
        beta_schedule="squaredcos_cap_v2", prediction_type=prediction_type, timestep_spacing="trailing"
    ).config
    scheduler = student_scheduler(config, 4)
    a, b = ddim_step_coefficients(scheduler)
    # float64: with epsilon prediction the first step (alpha_bar ~ 0 under the cosine schedule) is ill-conditioned
    # in float32, one reason the generators predict v
    path = torch.randn(3, 5, 1, 6, 6, generator=make_rng(0, stream=SAMPLING), dtype=torch.float64)
    x = path[:, 0]
    for k, t in enumerate(scheduler.timesteps):
        out = step_target(x, path[:, k + 1], a[k].expand(3), b[k].expand(3))
        x = scheduler.step(out, t, x, eta=0.0).prev_sample
        torch.testing.assert_close(x, path[:, k + 1], atol=1e-6, rtol=1e-6)


def test_coefficients_refuse_a_clipping_scheduler():
    scheduler = make_scheduler(DDPMScheduler(clip_sample=True).config, "ddim")
    scheduler.set_timesteps(4)
    with pytest.raises(ConfigError, match="without clip_sample"):
        ddim_step_coefficients(scheduler)


def test_student_timesteps_must_lie_on_the_teachers_path():
    assert nested_positions([999, 899, 799, 699, 599, 499, 399, 299, 199, 99], [999, 799, 599, 399, 199]) == [
        0,
        2,
        4,
        6,
        8,
    ]
    with pytest.raises(ConfigError, match="must all lie on the teacher's path"):
        nested_positions([999, 899, 799, 699, 599, 499, 399, 299, 199, 99], [999, 666, 333])


def test_trajectory_ends_in_the_images_sample_draws(tiny_generator_run):
    """The path of sample_trajectory starts from sample's noise and ends in sample's (clamped) images."""
    pipe = load_generator(tiny_generator_run / "export")
    labels = torch.tensor([0, 1, 2, 3, 4])
    knobs = {"steps": 4, "guidance": 2.0, "sampler": "dpmsolver++", "null_label": pipe.num_classes, "batch_size": 2}
    states = sample_trajectory(pipe.unet, pipe.scheduler.config, labels, rng=make_rng(1, stream=SAMPLING), **knobs)
    images = sample(pipe.unet, pipe.scheduler.config, labels, rng=make_rng(1, stream=SAMPLING), **knobs)
    noise = torch.randn(states[:, 0].shape, generator=make_rng(1, stream=SAMPLING))
    assert states.shape == (5, 5, *images.shape[1:])
    torch.testing.assert_close(states[:, 0], noise)
    torch.testing.assert_close(states[:, -1], images)


@pytest.fixture(scope="module")
def fewstep_run(tiny_generator_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kr_lightning.cli import main

    run = tmp_path_factory.mktemp("fewstep") / "run"
    main(
        [
            "fit",
            "--config",
            str(CONFIGS / "tiny_fewstep.yaml"),
            f"--trainer.default_root_dir={run}",
            f"--model.teacher={tiny_generator_run / 'export'}",
            f"--data.cache_dir={run / 'paths'}",
        ]
    )
    return run


def test_distillation_learns_the_steps_and_exports_a_one_row_per_step_sampler(fewstep_run, tiny_generator_run):
    from kr_lightning.fewstep import FewStepGenerator, TrajectoryDataModule

    metrics = (fewstep_run / "metrics.csv").read_text().splitlines()
    header = metrics[0].split(",")
    columns = {name: header.index(name) for name in ("val/step_loss", "val/image_mse")}
    logged = {n: [float(r.split(",")[c]) for r in metrics[1:] if r.split(",")[c]] for n, c in columns.items()}
    assert len(logged["val/image_mse"]) == 5  # free-running error logged every epoch (checkpoints chosen on it)
    losses = logged["val/step_loss"]  # teacher-forced error on held-out paths (the tiny teacher's paths are rough)
    assert losses[-1] < 0.8 * losses[0], losses

    pipe = load_generator(fewstep_run / "export")
    index = json.loads((fewstep_run / "export" / "model_index.json").read_text())
    assert (index["sample_steps"], index["sample_guidance"], index["sampler"]) == (2, 1.0, "ddim")
    assert pipe.scheduler.config.clip_sample is False
    assert pipe.distilled_from == {
        "generator": str(tiny_generator_run / "export"),
        "steps": 4,
        "guidance": 2.0,
        "sampler": "dpmsolver++",
        "paths": 8,
        "seed": 0,
    }

    # the export samples exactly what the module's own rollout (used for val/image_mse) computes
    module = FewStepGenerator.load_from_checkpoint(fewstep_run / "checkpoints" / "last.ckpt", weights_only=True)
    module.unet.load_state_dict(pipe.unet.state_dict())
    labels = torch.tensor([0, 3, 7, 9])
    images = pipe(labels, generator=make_rng(2, stream=SAMPLING)).images
    noise = torch.randn(
        (4, 1, pipe.unet.config.sample_size, pipe.unet.config.sample_size), generator=make_rng(2, stream=SAMPLING)
    )
    with torch.no_grad():
        rollout = module.eval().rollout(noise, labels)
    torch.testing.assert_close(images, rollout[..., : images.shape[-1], : images.shape[-1]], atol=1e-5, rtol=1e-5)

    # the paths were kept and a rerun of the data module reuses them
    kept = sorted((fewstep_run / "paths").glob("*.pt"))
    assert len(kept) == 2
    before = [p.stat().st_mtime_ns for p in kept]
    selection = fewstep_run / "selection.json"  # the teacher and its knobs may come from select's winner
    winner = {"generator": str(tiny_generator_run / "export"), "steps": 4, "guidance": 2.0, "sampler": "dpmsolver++"}
    selection.write_text(json.dumps({"winner": {**winner, "guidance_interval": None}}))
    data = TrajectoryDataModule(
        selection=str(selection),
        student_steps=2,
        n_train=8,
        n_val=4,
        cache_dir=str(fewstep_run / "paths"),
        flag="digits",
        seed=0,
        channels_last=False,
    )
    data.setup()
    assert data.knobs == {"steps": 4, "guidance": 2.0, "sampler": "dpmsolver++"}
    assert [p.stat().st_mtime_ns for p in kept] == before
    x_a, k, y, x_b = data.train_pairs().tensors
    assert len(x_a) == 16 and k.tolist() == [0, 1] * 8 and y.tolist() == sorted(y.tolist())
    torch.testing.assert_close(x_a[1::2], x_b[0::2])  # step 1 starts where step 0 ends


def test_mode_b_audits_refuse_a_few_step_student(fewstep_run, tiny_generator_run):
    """Mode b re-trains generators, not their distillation: a student of a few-step generator is refused."""
    from kr_lightning.distill.plan import SyntheticPlan
    from kr_lightning.privacy.audit import check_mode_b_plan

    def plan(generator: Path) -> SyntheticPlan:
        return SyntheticPlan(generator=str(generator), steps=2, guidance=1.0, sampler="ddim", counts=(2,) * 10, seed=0)

    check_mode_b_plan(plan(tiny_generator_run / "export"))
    with pytest.raises(ConfigError, match="does not re-train the distillation"):
        check_mode_b_plan(plan(fewstep_run / "export"))
