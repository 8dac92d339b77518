from kr_lightning.distill.schedule import set_index, sets_generated


def indices(epochs, **kw):
    return [set_index(e, **kw) for e in range(epochs)]


def test_plain_regeneration_and_static():
    assert indices(6, regenerate_every=1) == [0, 1, 2, 3, 4, 5]
    assert indices(6, regenerate_every=2) == [0, 0, 1, 1, 2, 2]
    assert indices(4, regenerate_every=0) == [0, 0, 0, 0]


def test_pool_draws_a_different_set_each_epoch_and_refreshes_a_fraction_per_cycle():
    sched = {"regenerate_every": 1, "pool_sets": 5, "pool_refresh": 0.4, "seed": 3}
    seq = indices(25, **sched)
    assert seq == indices(25, **sched)  # a pure function: resume sees the same sets
    for cycle in range(5):
        assert len(set(seq[cycle * 5 : cycle * 5 + 5])) == 5  # disjoint sets within a cycle
    assert seq[:5] == [0, 1, 2, 3, 4]
    for cycle in range(1, 5):
        new = set(seq[cycle * 5 : cycle * 5 + 5]) - set(seq[: cycle * 5])
        assert len(new) == 2  # round(0.4 * 5) slots regenerated per cycle
    assert sets_generated(25, **sched) == 5 + 4 * 2


def test_pool_refresh_extremes():
    assert sets_generated(20, regenerate_every=1, pool_sets=4, pool_refresh=1.0) == 20
    assert indices(8, regenerate_every=1, pool_sets=4, pool_refresh=0.0) == [0, 1, 2, 3, 0, 1, 2, 3]
