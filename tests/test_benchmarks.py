"""The sampling-frontier benchmark end to end on the tiny digits generator (its numbers, not their size)."""

import importlib.util
import json

import pytest

from conftest import REPO


@pytest.fixture(scope="module")
def frontier():
    spec = importlib.util.spec_from_file_location("sampling_frontier", REPO / "benchmarks" / "sampling_frontier.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_frontier_times_and_scores_every_setting(tmp_path, tiny_generator_run, tiny_digits_teacher, frontier):
    last = tiny_generator_run / "checkpoints" / "last.ckpt"  # a setting may draw from another generator
    settings = tmp_path / "settings.yaml"
    settings.write_text(
        "settings:\n"
        "  - {sampler: dpmsolver++, steps: 3, guidance: 2.0}\n"
        "  - {sampler: unipc, steps: 2, guidance: 2.0, guidance_interval: [0.5, 100.0]}\n"
        f"  - {{sampler: ddim, steps: 2, guidance: 1.0, generator: {last}, label: other, batch: 64}}\n"
    )
    frontier.main(
        [
            f"--generator={tiny_generator_run / 'export'}",
            f"--teacher={tiny_digits_teacher}",
            "--dataset=digits",
            f"--settings={settings}",
            f"--out={tmp_path / 'out'}",
            "--rounds=1",
            "--n-quality=180",
            "--spread-seeds=1",
            "--no-compile",
        ]
    )
    rows = [json.loads(line) for line in (tmp_path / "out" / "frontier.jsonl").read_text().splitlines()]
    assert [r["setting"] for r in rows] == ["dpmsolver++-s3-g2", "unipc-s2-g2-i0.5-100", "ddim-s2-g1-b64-other"]
    assert [r["unet_rows_per_image"] for r in rows] == [6, 3, 2]  # sigma ~2e4 (t = T) is outside the interval
    assert rows[2]["generator"] == str(last) and rows[0]["generator"] == str(tiny_generator_run / "export")
    assert rows[0]["speedup_vs_baseline"] == 1.0 and all(s > 0 for r in rows[1:] for s in r["speedup_each"])
    assert len(rows[0]["spread"]["fidelity"]) == 2 and all("spread" not in r for r in rows[1:])
    for r in rows:
        assert 0.0 <= r["quality"]["fidelity"] <= 1.0 and r["s_per_1000"] > 0 and len(r["set_seconds_each"]) == 1
    assert (tmp_path / "out" / "frontier.png").is_file()
