import math

import pytest
import torch

from kr_lightning.models.lr_schedule import warmup_schedule


def formula(step, warmup, total, after):
    """The schedule as written out: linear warm-up ``(s + 1) / w``, then half a cosine to zero (or constant)."""
    if step < warmup:
        return (step + 1) / warmup
    if after == "constant":
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


@pytest.mark.parametrize(
    ("warmup", "total", "after"),
    [(0, 12, "cosine"), (1, 12, "cosine"), (4, 12, "cosine"), (12, 12, "cosine"), (20, 12, "cosine")]
    + [(100, 1000, "cosine"), (4, 12, "constant"), (0, 12, "constant")],
)
def test_warmup_schedule_follows_the_formula(warmup, total, after):
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=2e-3)
    scheduler = warmup_schedule(optimizer, warmup_steps=warmup, total_steps=total, after=after)
    for step in range(total):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(2e-3 * formula(step, warmup, total, after), abs=1e-15)
        optimizer.step()
        scheduler.step()


def test_warmup_schedule_resumes_from_the_saved_states():
    # like Lightning's resume: the optimizer state (which holds the current rate) and then the scheduler's
    def run(steps, states=None):
        optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        scheduler = warmup_schedule(optimizer, warmup_steps=3, total_steps=10)
        if states is not None:
            optimizer.load_state_dict(states[0])
            scheduler.load_state_dict(states[1])
        lrs = []
        for _ in range(steps):
            optimizer.step()
            scheduler.step()
            lrs.append(optimizer.param_groups[0]["lr"])
        return lrs, (optimizer.state_dict(), scheduler.state_dict())

    full, _ = run(9)
    first, states = run(5)
    rest, _ = run(4, states)
    assert first + rest == pytest.approx(full, abs=1e-15)
