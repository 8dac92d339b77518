import functools
import hashlib
import json

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from conftest import CONFIGS, cli_error
from kr_lightning.cli import main
from kr_lightning.distill import GKDDataModule
from kr_lightning.distill.synthesis import balanced_labels
from kr_lightning.models import SmallCNN, Student


def gkd(generator_run, teacher=None, **kw):
    args = {"counts": [2] * 10, "steps": 2, "batch_size": 10} | kw
    dm = GKDDataModule(
        flag="digits",
        max_shift=1,
        generator=str(generator_run / "export"),
        teacher_ckpt=None if teacher is None else str(teacher),
        seed=3,
        **args,
    )
    dm.setup("fit")
    return dm


def student_args(run, generator_run, teacher, *extra):
    return [
        "fit",
        "--config",
        str(CONFIGS / "tiny_student.yaml"),
        f"--trainer.default_root_dir={run}",
        f"--data.generator={generator_run / 'export'}",
        f"--data.teacher_ckpt={teacher}",
        *extra,
    ]


def test_regeneration_is_a_pure_function_of_seed_set_and_rank(tiny_generator_run, tiny_digits_teacher):
    dm = gkd(tiny_generator_run, tiny_digits_teacher)
    a, b = dm.generate(0, rank=0, world_size=1), dm.generate(0, rank=0, world_size=1)
    for ta, tb in zip(a.tensors, b.tensors, strict=True):
        assert torch.equal(ta, tb)
    nxt = dm.generate(1, rank=0, world_size=1)
    assert not torch.equal(a.tensors[0], nxt.tensors[0])
    assert torch.equal(a.tensors[2], nxt.tensors[2])  # same class balance


def test_ranks_draw_disjoint_equal_shards(tiny_generator_run):
    dm = gkd(tiny_generator_run, counts=[4] * 10)
    r0, r1 = dm.generate(0, rank=0, world_size=2), dm.generate(0, rank=1, world_size=2)
    assert len(r0) == len(r1) == 20
    assert torch.equal(r0.tensors[2], r1.tensors[2])
    images0 = {img.numpy().tobytes() for img in r0.tensors[0]}
    assert not images0 & {img.numpy().tobytes() for img in r1.tensors[0]}


def test_set_index_follows_the_schedule(tiny_generator_run):
    assert [gkd(tiny_generator_run, regenerate_every=3).set_index(e) for e in range(7)] == [0, 0, 0, 1, 1, 1, 2]
    assert {gkd(tiny_generator_run, regenerate_every=0).set_index(e) for e in range(5)} == {0}


def test_balanced_labels():
    assert torch.bincount(balanced_labels(3, 10)).tolist() == [4, 3, 3]
    assert torch.bincount(balanced_labels(2, 546)).tolist() == [273, 273]


def test_soft_labels_are_distributions_from_the_teacher(tiny_generator_run, tiny_digits_teacher):
    dm = gkd(tiny_generator_run, tiny_digits_teacher)
    x, logits, y = dm.generate(0, rank=0, world_size=1).tensors
    with torch.no_grad():
        expected = dm.teacher(x)
    torch.testing.assert_close(logits, expected)
    probs = (logits / 2.0).softmax(-1)
    torch.testing.assert_close(probs.sum(-1), torch.ones(len(x)))
    assert (probs >= 0).all()
    assert set(dm.last_stats) >= {"gen_seconds", "teacher_confidence", "teacher_entropy", "teacher_agreement"}


def test_without_teacher_targets_are_absent_and_student_refuses_soft(tmp_path, tiny_generator_run, capsys):
    dm = gkd(tiny_generator_run)
    assert not dm.has_teacher and torch.count_nonzero(dm.generate(0, 0, 1).tensors[1]) == 0
    assert "no teacher" in cli_error(
        capsys,
        [
            "fit",
            "--config",
            str(CONFIGS / "tiny_student.yaml"),
            f"--trainer.default_root_dir={tmp_path}",
            f"--data.generator={tiny_generator_run / 'export'}",
        ],
    )


def test_trainer_must_reload_loaders(tmp_path, tiny_generator_run, tiny_digits_teacher, capsys):
    args = student_args(
        tmp_path, tiny_generator_run, tiny_digits_teacher, "--trainer.reload_dataloaders_every_n_epochs=0"
    )
    assert "reload_dataloaders_every_n_epochs: 1" in cli_error(capsys, args)


def test_mismatched_teacher_is_refused(tmp_path, tiny_root, tiny_generator_run):
    run = tmp_path / "teacher"
    main(
        [
            "fit",
            "--config",
            str(CONFIGS / "tiny_teacher.yaml"),
            f"--trainer.default_root_dir={run}",
            f"--data.root={tiny_root}",
            "--trainer.max_epochs=1",
        ]
    )
    with pytest.raises(ValueError, match=r"teacher .* does not fit dataset 'digits': classes 2 \(data: 10\)"):
        gkd(tiny_generator_run, run / "checkpoints" / "best.ckpt")


def test_selection_file_supplies_generator_and_knobs(tmp_path, tiny_generator_run):
    selection = tmp_path / "selection.json"
    winner = {"generator": str(tiny_generator_run / "export"), "steps": 3, "guidance": 1.5, "sampler": "dpmsolver++"}
    selection.write_text(json.dumps({"winner": winner}))
    dm = GKDDataModule(flag="digits", selection=str(selection), guidance=2.5)
    dm.setup("fit")
    assert dm.knobs == {"steps": 3, "guidance": 2.5, "sampler": "dpmsolver++", "guidance_interval": None}
    selection.write_text(json.dumps({"winner": winner | {"guidance_interval": [0.5, 3.0]}}))
    dm = GKDDataModule(flag="digits", selection=str(selection))
    dm.setup("fit")
    assert dm.knobs["guidance_interval"] == (0.5, 3.0)
    assert dm.plan().data_overrides()["guidance_interval"] == [0.5, 3.0]
    forced = GKDDataModule(flag="digits", selection=str(selection), guidance_interval=[0.0, float("inf")])
    forced.setup("fit")
    assert forced.knobs["guidance_interval"] == (0.0, float("inf"))


def test_guidance_interval_sets_get_their_own_cache_key(tmp_path, tiny_generator_run):
    every = gkd(tiny_generator_run, cache_dir=str(tmp_path / "cache"))
    assert "guidance_interval" not in every.image_knobs()  # caches guided at every step keep their keys
    # sigma in (0.5, 100]: the second of the two steps is guided, the first (sigma ~ 2e4) is not
    interval = gkd(tiny_generator_run, cache_dir=str(tmp_path / "cache"), guidance_interval=[0.5, 100.0])
    assert interval.image_knobs()["guidance_interval"] == (0.5, 100.0)
    a, b = every.generate(0, rank=0, world_size=1).tensors[0], interval.generate(0, rank=0, world_size=1).tensors[0]
    assert not torch.equal(a, b)
    assert len(list((tmp_path / "cache").glob("set0000-rank0-*.pt"))) == 2


def test_frozen_models_get_no_gradients_and_stay_out_of_the_student(tmp_path, tiny_generator_run, tiny_digits_teacher):
    run = tmp_path / "student"
    main(student_args(run, tiny_generator_run, tiny_digits_teacher))
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert all(k.startswith("net.") for k in ckpt["state_dict"]), sorted(ckpt["state_dict"])[:5]
    student_params = sum(p.numel() for p in SmallCNN(1, 10, width=8).parameters())
    saved_params = sum(
        v.numel() for k, v in ckpt["state_dict"].items() if "running" not in k and "num_batches" not in k
    )
    assert saved_params == student_params
    state = ckpt["optimizer_states"][0]["state"]
    assert sum(s["exp_avg"].numel() for s in state.values()) == student_params


class StopAt(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("simulated kill")


def test_resume_after_interruption_ends_with_the_same_weights(
    tmp_path, tiny_generator_run, tiny_digits_teacher, monkeypatch
):
    full, cut = tmp_path / "full", tmp_path / "cut"
    args = ("--trainer.max_epochs=3", "--trainer.deterministic=true")
    main(student_args(full, tiny_generator_run, tiny_digits_teacher, *args))
    with pytest.raises(RuntimeError, match="simulated kill"):
        main(
            student_args(
                cut,
                tiny_generator_run,
                tiny_digits_teacher,
                *args,
                "--trainer.callbacks+=tests.test_gkd.StopAt",
                "--trainer.callbacks.epoch=2",
            )
        )
    assert torch.load(cut / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1
    generated, generate = [], GKDDataModule.generate
    monkeypatch.setattr(
        GKDDataModule, "generate", lambda self, i, *a, **k: generated.append(i) or generate(self, i, *a, **k)
    )
    main(student_args(cut, tiny_generator_run, tiny_digits_teacher, *args))
    assert generated == [2]  # only the set of the epoch it trains, not again the finished epoch's
    a = torch.load(full / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(cut / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


class RecordImages(Callback):
    def __init__(self, folder):
        self.folder = folder

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        path = self.folder / f"rank{trainer.global_rank}_epoch{trainer.current_epoch}.txt"
        with path.open("a") as fh:
            for image in batch[0]:
                fh.write(hashlib.sha1(image.cpu().numpy().tobytes()).hexdigest() + "\n")


def test_ddp_two_cpu_processes_train_on_different_images(tmp_path, tiny_generator_run, tiny_digits_teacher):
    dm = GKDDataModule(
        flag="digits",
        generator=str(tiny_generator_run / "export"),
        teacher_ckpt=str(tiny_digits_teacher),
        counts=[4] * 10,
        steps=2,
        batch_size=5,
        seed=1,
        label_on_view=False,
    )
    model = Student(num_classes=10, in_channels=1, image_size=8, net=functools.partial(SmallCNN, width=8))
    trainer = L.Trainer(
        accelerator="cpu",
        strategy="ddp_spawn",
        devices=2,
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        reload_dataloaders_every_n_epochs=1,
        callbacks=[RecordImages(tmp_path)],
    )
    trainer.fit(model, datamodule=dm)
    seen = {p.stem: p.read_text().split() for p in tmp_path.glob("rank*_epoch*.txt")}
    assert set(seen) == {"rank0_epoch0", "rank1_epoch0", "rank0_epoch1", "rank1_epoch1"}
    for epoch in (0, 1):
        r0, r1 = seen[f"rank0_epoch{epoch}"], seen[f"rank1_epoch{epoch}"]
        assert len(r0) == len(r1) == 20 and len(set(r0)) == 20
        assert not set(r0) & set(r1)
    assert not set(seen["rank0_epoch0"]) & set(seen["rank0_epoch1"])


def test_cache_dir_reuses_generated_sets(tmp_path, tiny_generator_run, monkeypatch):
    dm = gkd(tiny_generator_run, cache_dir=str(tmp_path / "cache"))
    first = dm.generate(2, rank=0, world_size=1).tensors[0]
    assert len(list((tmp_path / "cache").glob("set0002-rank0-*.pt"))) == 1

    def no_sampling(*args, **kwargs):
        raise AssertionError("a cached set was generated again")

    monkeypatch.setattr("kr_lightning.distill.datamodule.synthesize", no_sampling)
    again = gkd(tiny_generator_run, cache_dir=str(tmp_path / "cache")).generate(2, rank=0, world_size=1).tensors[0]
    assert torch.equal(first, again)
    other = gkd(tiny_generator_run, cache_dir=str(tmp_path / "cache"), guidance=3.0)
    with pytest.raises(AssertionError, match="generated again"):
        other.generate(2, rank=0, world_size=1)


def test_bf16_sets_get_their_own_cache_key_and_float32_keys_do_not_change(tmp_path, tiny_generator_run, monkeypatch):
    from kr_lightning.distill import cache
    from kr_lightning.errors import ConfigError

    monkeypatch.setattr("kr_lightning.models.speedups.bf16_unsupported", lambda device: None)
    exact = gkd(tiny_generator_run, cache_dir=str(tmp_path / "cache"))
    old_keys = {k: v for k, v in exact.knobs.items() if k != "guidance_interval"}
    assert exact.image_knobs() == old_keys  # the key float32 caches were written under before the options
    fast = gkd(tiny_generator_run, cache_dir=str(tmp_path / "cache"), gen_precision="bf16-mixed")
    assert fast.image_knobs() == old_keys | {"autocast": "bfloat16"}
    a, b = exact.generate(0, rank=0, world_size=1).tensors[0], fast.generate(0, rank=0, world_size=1).tensors[0]
    assert not torch.equal(a, b) and (a - b).abs().mean() < 0.05
    assert len(list((tmp_path / "cache").glob("set0000-rank0-*.pt"))) == 2
    key = {"seed": 3, "set_index": 0, "rank": 0, "labels": exact.local_labels(1)}
    assert cache.cache_file(tmp_path / "cache", exact.generator.source, "cpu", knobs=old_keys, **key).is_file()
    with pytest.raises(ConfigError, match="precision must be one of"):
        gkd(tiny_generator_run, gen_precision="16-mixed")


def test_pool_mode_follows_the_pool_schedule(tiny_generator_run):
    from kr_lightning.distill.schedule import set_index

    dm = gkd(tiny_generator_run, pool_sets=3, pool_refresh=0.34)
    expected = [set_index(e, regenerate_every=1, pool_sets=3, pool_refresh=0.34, seed=3) for e in range(9)]
    assert [dm.set_index(e) for e in range(9)] == expected
    assert len(set(expected[:3])) == 3 and len(set(expected)) == 3 + 2  # one slot refreshed per later cycle


def test_channels_last_generation_matches(tiny_generator_run):
    plain = gkd(tiny_generator_run).images(0, 0, 1)
    fast = gkd(tiny_generator_run, channels_last=True).images(0, 0, 1)
    torch.testing.assert_close(plain, fast, atol=1e-4, rtol=0)


class PositionTeacher(torch.nn.Module):
    """A fixed linear map of the flattened pixels: its logits change when an image is shifted."""

    def __init__(self, pixels, num_classes=10):
        super().__init__()
        self.linear = torch.nn.Linear(pixels, num_classes)
        with torch.no_grad():
            self.linear.weight.copy_(torch.linspace(-1, 1, num_classes * pixels).reshape(num_classes, pixels))
            self.linear.bias.zero_()

    def forward(self, x):
        return self.linear(x.flatten(1))


@pytest.mark.parametrize("label_on_view", [True, False])
def test_teacher_labels_the_augmented_view_the_student_sees(tiny_generator_run, label_on_view):
    from types import SimpleNamespace

    from kr_lightning.distill.synthesis import teacher_logits

    dm = gkd(tiny_generator_run, label_on_view=label_on_view)  # max_shift=1
    dm.teacher = teacher = PositionTeacher(pixels=8 * 8)
    x, set_logits, y = (t[:10] for t in dm.generate(0, rank=0, world_size=1).tensors)
    torch.testing.assert_close(set_logits, teacher_logits(teacher, x))  # the set is labelled on the raw images

    batch = (x, set_logits, y)
    dm.trainer = SimpleNamespace(training=False, global_step=4, global_rank=0)
    assert dm.on_after_batch_transfer(batch, 0) is batch  # val / test batches are left alone

    dm.trainer.training = True
    view, logits, labels = dm.on_after_batch_transfer(batch, 0)
    assert torch.equal(labels, y)
    assert torch.equal(view, dm.augment(x, dm.augmentation_rng(4, 0)))  # the augmentation stream of step 4
    assert not torch.equal(view, x)
    on_view, on_raw = teacher_logits(teacher, view), teacher_logits(teacher, x)
    assert not torch.allclose(on_view, on_raw)
    if label_on_view:
        torch.testing.assert_close(logits, on_view)
    else:
        assert torch.equal(logits, set_logits)


def test_teacher_labels_the_mixed_view_and_labels_follow_the_dominant_image(tiny_generator_run, tiny_digits_teacher):
    from types import SimpleNamespace

    from kr_lightning.data.augment import mixup
    from kr_lightning.distill.synthesis import teacher_logits
    from kr_lightning.seeding import MIXUP, make_rng

    dm = gkd(tiny_generator_run, tiny_digits_teacher, mixup=1.0)  # max_shift=1, label_on_view
    dm.teacher = teacher = PositionTeacher(pixels=8 * 8)
    x, set_logits, y = (t[:16] for t in dm.generate(0, rank=0, world_size=1).tensors)
    dm.trainer = SimpleNamespace(training=True, global_step=4, global_rank=0)
    view, logits, labels = dm.on_after_batch_transfer((x, set_logits, y), 0)
    shifted = dm.augment(x, dm.augmentation_rng(4, 0))  # the augmentation stream is unchanged by mixing
    expected, dominant = mixup(shifted, make_rng(3, 4, 0, stream=MIXUP), 1.0)
    assert torch.equal(view, expected) and not torch.equal(view, shifted)
    torch.testing.assert_close(logits, teacher_logits(teacher, view))
    assert torch.equal(labels, y[dominant]) and not torch.equal(dominant, torch.arange(16))


@pytest.mark.parametrize(("teacher_on", "grain"), [(True, 0.0), (False, 0.0), (True, 0.7)])
def test_teacher_labels_the_noisy_view_after_the_augmentation(
    tiny_generator_run, tiny_digits_teacher, teacher_on, grain
):
    from types import SimpleNamespace

    from kr_lightning.data.augment import add_noise
    from kr_lightning.distill.synthesis import teacher_logits
    from kr_lightning.seeding import NOISE, make_rng

    dm = gkd(tiny_generator_run, tiny_digits_teacher if teacher_on else None, noise=0.1, noise_grain=grain)
    dm.teacher = teacher = PositionTeacher(pixels=8 * 8) if teacher_on else None
    x, set_logits, y = (t[:16] for t in dm.generate(0, rank=0, world_size=1).tensors)
    dm.trainer = SimpleNamespace(training=True, global_step=4, global_rank=0)
    view, logits, labels = dm.on_after_batch_transfer((x, set_logits, y), 0)
    shifted = dm.augment(x, dm.augmentation_rng(4, 0))  # the augmentation stream is unchanged by the noise
    expected = add_noise(shifted, make_rng(3, 4, 0, stream=NOISE), 0.1, grain)  # max_shift=1
    assert torch.equal(view, expected) and not torch.equal(view, shifted)
    assert torch.equal(labels, y)
    if teacher_on:
        torch.testing.assert_close(logits, teacher_logits(teacher, view))
    else:  # hard-label students may add noise too: their logits stay the set's zeros
        assert torch.equal(logits, set_logits)


def test_negative_noise_is_refused(tiny_generator_run):
    from kr_lightning.errors import ConfigError

    with pytest.raises(ConfigError, match="noise is a standard deviation"):
        gkd(tiny_generator_run, noise=-0.1)
    with pytest.raises(ConfigError, match="noise_grain is a correlation length"):
        gkd(tiny_generator_run, noise=0.1, noise_grain=-0.5)


@pytest.mark.parametrize("kw", [{"mixup": 1.0}, {"mixup": 1.0, "label_on_view": False}, {"mixup": -0.5}])
def test_mixup_without_a_teacher_on_the_view_is_refused(tiny_generator_run, tiny_digits_teacher, kw):
    from kr_lightning.errors import ConfigError

    teacher = None if kw.get("label_on_view", True) and kw["mixup"] > 0 else tiny_digits_teacher
    with pytest.raises(ConfigError, match="mixup must be >= 0 and, when > 0, needs the teacher"):
        gkd(tiny_generator_run, teacher, **kw)
