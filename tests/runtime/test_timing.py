import numpy as np

from runtime.timing import StageSamples, StageTimer


def test_small_runs_are_exact():
    xs = np.random.default_rng(1).exponential(5.0, 500)
    s = StageSamples(capacity=1000)
    for x in xs:
        s.add(float(x))
    got = s.summary()
    assert got["count"] == 500 and np.isclose(got["total_ms"], xs.sum()) and np.isclose(got["mean_ms"], xs.mean())
    assert got["median_ms"] == np.median(xs) and got["p90_ms"] == np.percentile(xs, 90)


def test_long_runs_keep_constant_memory_and_close_quantiles():
    xs = np.random.default_rng(2).lognormal(1.0, 0.5, 200_000)
    s = StageSamples(capacity=4096)
    for x in xs:
        s.add(float(x))
    got = s.summary()
    assert s.kept.size == 4096 and got["count"] == xs.size
    assert np.isclose(got["mean_ms"], xs.mean())  # exact whatever the length
    # the reservoir is a uniform sample: its quantiles are within a few percent of the true ones
    assert abs(got["median_ms"] / np.median(xs) - 1) < 0.05
    assert abs(got["p90_ms"] / np.percentile(xs, 90) - 1) < 0.05


def test_timer_records_named_stages_and_can_be_disabled():
    timer = StageTimer()
    for _ in range(3):
        with timer("flow"):
            pass
    assert timer.summary()["flow"]["count"] == 3
    off = StageTimer(enabled=False)
    with off("flow"):
        pass
    assert off.summary() == {}
