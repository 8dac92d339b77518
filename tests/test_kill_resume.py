"""SIGKILL each stage at a random point, rerun the same command, and get the uninterrupted run's results.

SIGTERM (``kill``, a scheduler's preemption) must stop a stage at once, with the shell's status 143 and a line that
says how to resume, and the rerun must resume just as after a SIGKILL.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import CONFIGS, REPO
from kr_lightning.cli import main

RNG = random.Random(1234)


def env_for(tmp_path, kill_step=-1, kill_signal=signal.SIGKILL):
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(REPO / "tests"), str(REPO)]),
        KR_TEST_KILL_AT_STEP=str(kill_step),
        KR_TEST_KILL_MARKER=str(tmp_path / "killed"),
        KR_TEST_KILL_SIGNAL=kill_signal.name,
    )
    return env


def cli(args, env, check=True):
    done = subprocess.run(
        [sys.executable, "-m", "kr_lightning", *args], env=env, capture_output=True, text=True, cwd=REPO, timeout=600
    )
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def same_weights(a, b):
    sa = torch.load(a, weights_only=True)["state_dict"]
    sb = torch.load(b, weights_only=True)["state_dict"]
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def stopped_by(done, kill_signal):
    """Assert that ``done`` ended because of ``kill_signal``: SIGKILL leaves no say, SIGTERM exits as a shell does."""
    if kill_signal == signal.SIGKILL:
        assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    else:
        assert done.returncode == 128 + kill_signal, done.stderr[-2000:]
        assert "rerun the same command to resume" in done.stderr


def kill_and_resume_fit(tmp_path, config, steps_per_run, *extra, kill_signal=signal.SIGKILL):
    base = [
        "fit",
        "--config",
        str(config),
        "--trainer.deterministic=true",
        "--trainer.callbacks+=kill_switch.KillAt",
        *extra,
    ]
    full, cut = tmp_path / "full", tmp_path / "cut"
    main([*base, f"--trainer.default_root_dir={full}"])  # uninterrupted reference, in process (no kill step set)
    kill_step = RNG.randint(steps_per_run // 3, steps_per_run - 2)
    killed = cli([*base, f"--trainer.default_root_dir={cut}"], env_for(tmp_path, kill_step, kill_signal), check=False)
    stopped_by(killed, kill_signal)
    assert (tmp_path / "killed").read_text() == str(kill_step)
    assert "finished" not in json.loads((cut / "run.json").read_text())
    resumed = cli([*base, f"--trainer.default_root_dir={cut}"], env_for(tmp_path, kill_step))
    assert "resuming from" in resumed.stdout
    record = json.loads((cut / "run.json").read_text())
    assert record["sessions"] == 2 and 0 < record["earlier_seconds"] < record["wall_seconds"]
    same_weights(full / "checkpoints" / "last.ckpt", cut / "checkpoints" / "last.ckpt")
    return full, cut


def test_teacher_resumes_after_sigkill(tmp_path, tiny_root):
    full, cut = kill_and_resume_fit(
        tmp_path, CONFIGS / "tiny_teacher.yaml", 9, f"--data.root={tiny_root}", "--trainer.max_epochs=3"
    )
    rows = lambda run: [r.split(",")[-3:] for r in (run / "metrics.csv").read_text().splitlines() if r.startswith("2,")]  # noqa: E731
    assert rows(full)[-1] == rows(cut)[-1]  # the same final val metrics


def test_teacher_stops_at_once_on_sigterm_and_resumes(tmp_path, tiny_root):
    """Lightning alone would finish the epoch and exit with status 0, as if the run were done."""
    kill_and_resume_fit(
        tmp_path,
        CONFIGS / "tiny_teacher.yaml",
        9,
        f"--data.root={tiny_root}",
        "--trainer.max_epochs=3",
        kill_signal=signal.SIGTERM,
    )


def test_generator_resumes_after_sigkill(tmp_path):
    full, cut = kill_and_resume_fit(tmp_path, CONFIGS / "tiny_generator.yaml", 12, "--trainer.max_epochs=4")
    assert (cut / "export" / "model_index.json").is_file()


def test_student_resumes_after_sigkill(tmp_path, tiny_generator_run, tiny_digits_teacher):
    kill_and_resume_fit(
        tmp_path,
        CONFIGS / "tiny_student.yaml",
        9,
        "--trainer.max_epochs=3",
        f"--data.generator={tiny_generator_run / 'export'}",
        f"--data.teacher_ckpt={tiny_digits_teacher}",
    )


def kill_when(process, folder, pattern, count):
    """SIGKILL ``process`` as soon as ``folder`` holds ``count`` files matching ``pattern``."""
    deadline = time.time() + 600
    while time.time() < deadline and process.poll() is None:
        if len(list(folder.glob(pattern))) >= count:
            process.send_signal(signal.SIGKILL)
            process.wait()
            return
        time.sleep(0.02)
    pytest.fail(f"the process ended before {count} x {pattern} appeared in {folder}")


def popen(args, tmp_path):
    return subprocess.Popen(
        [sys.executable, "-m", "kr_lightning", *args],
        env=env_for(tmp_path),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_select_resumes_after_sigkill(tmp_path, tiny_generator_run):
    args = ["select", "--config", str(CONFIGS / "tiny_select.yaml"), f"--generator_run={tiny_generator_run}"]
    main([*args, f"--out={tmp_path / 'full'}"])
    process = popen([*args, f"--out={tmp_path / 'cut'}"], tmp_path)
    kill_when(process, tmp_path / "cut" / "candidates", "*.json", RNG.randint(1, 3))
    assert not (tmp_path / "cut" / "selection.json").exists()
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cut" / "candidates").glob("*.json")}
    cli([*args, f"--out={tmp_path / 'cut'}"], env_for(tmp_path))
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cut" / "candidates").glob("*.json")}
    assert all(after[name] == mtime for name, mtime in before.items()), "finished candidates were scored again"
    full = json.loads((tmp_path / "full" / "selection.json").read_text())
    cut = json.loads((tmp_path / "cut" / "selection.json").read_text())
    assert full["winner"] == cut["winner"]
    assert [c["val_acc"] for c in full["checkpoints"] + full["knobs"]] == [
        c["val_acc"] for c in cut["checkpoints"] + cut["knobs"]
    ]


def test_select_stops_at_once_on_sigterm_inside_a_quick_student(tmp_path, tiny_generator_run):
    """Lightning's handler in each quick student used to swallow SIGTERM; ``select`` must stop, not score on."""
    out = tmp_path / "cut"
    args = ["select", "--config", str(CONFIGS / "tiny_select.yaml"), f"--generator_run={tiny_generator_run}"]
    process = subprocess.Popen(
        [sys.executable, "-m", "kr_lightning", *args, f"--out={out}"],
        env=env_for(tmp_path),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = []
    for line in process.stderr:  # a quick student's fit has begun once Lightning loads its train dataloader
        seen.append(line)
        if "Loading `train_dataloader`" in line and list((out / "candidates").glob("*.json")):
            break
    else:
        pytest.fail("select ended before a second quick student started:\n" + "".join(seen[-20:]))
    before = sorted(p.name for p in (out / "candidates").glob("*.json"))
    process.send_signal(signal.SIGTERM)
    _, rest = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, rest[-2000:]
    assert "rerun the same command to resume" in rest
    assert sorted(p.name for p in (out / "candidates").glob("*.json")) == before, "a candidate was scored after it"
    assert not (out / "selection.json").exists()
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "candidates").glob("*.json")}
    cli([*args, f"--out={out}"], env_for(tmp_path))
    assert json.loads((out / "selection.json").read_text())["winner"]
    assert all((out / "candidates" / name).stat().st_mtime_ns == t for name, t in mtimes.items())


@pytest.mark.long
def test_mia_resumes_after_sigkill(tmp_path, tiny_generator_run, tiny_digits_teacher):
    student = tmp_path / "student"
    main(
        [
            "fit",
            "--config",
            str(CONFIGS / "tiny_student.yaml"),
            f"--trainer.default_root_dir={student}",
            f"--data.generator={tiny_generator_run / 'export'}",
            f"--data.teacher_ckpt={tiny_digits_teacher}",
            "--trainer.max_epochs=1",
            "--trainer.deterministic=true",
        ]
    )
    selection = tmp_path / "selection.json"
    selection.write_text(
        json.dumps(
            {
                "winner": {
                    "generator": str(tiny_generator_run / "export"),
                    "steps": 2,
                    "guidance": 2.0,
                    "sampler": "ddim",
                }
            }
        )
    )
    args = [
        "mia",
        "--config",
        str(CONFIGS / "tiny_mia.yaml"),
        f"--teacher_run={tiny_digits_teacher.parent.parent}",
        f"--student_run={student}",
        f"--cache_dir={tmp_path / 'synthetic'}",
        "--n_references=4",
    ]
    main([*args, f"--out={tmp_path / 'full'}"])
    process = popen([*args, f"--out={tmp_path / 'cut'}"], tmp_path)
    kill_when(process, tmp_path / "cut" / "refs", "ref*/logits.npz", RNG.randint(1, 3))
    cli([*args, f"--out={tmp_path / 'cut'}"], env_for(tmp_path))
    full = json.loads((tmp_path / "full" / "mia.json").read_text())
    cut = json.loads((tmp_path / "cut" / "mia.json").read_text())
    assert full["models"] == cut["models"]
