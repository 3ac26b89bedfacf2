import gc
import tracemalloc

import pytest
import torch

from gsvnet import GSVNet, GSVNetConfig, KeyframeScheduler, segment_frames
from gsvnet import ops


@pytest.fixture(scope="module")
def model() -> GSVNet:
    torch.manual_seed(0)
    return GSVNet(GSVNetConfig(keyframe_net="swiftnet_r18", num_classes=6)).eval()


def _frames(n: int, size=(64, 96)):
    g = torch.Generator().manual_seed(7)
    for _ in range(n):
        yield torch.randint(0, 256, (1, *size, 3), dtype=torch.uint8, generator=g)


def test_interval_one_equals_the_keyframe_net_on_every_frame(model):
    results = list(segment_frames(model, _frames(4), interval=1))
    assert all(r.keyframe for r in results)
    for r, frame in zip(results, _frames(4)):
        with torch.no_grad():
            expected = ops.scores_to_labels(model.keyframe_scores(frame), (64, 96))
        assert torch.equal(r.labels, expected)


@pytest.mark.parametrize("interval", [2, 3, 5])
def test_keyframes_fall_at_multiples_of_the_interval(model, interval):
    results = list(segment_frames(model, _frames(11), interval=interval))
    assert [r.index for r in results if r.keyframe] == list(range(0, 11, interval))
    assert [r.index for r in results] == list(range(11))


def test_non_keyframes_use_propagation(model):
    frames = list(_frames(2))
    results = list(segment_frames(model, iter(frames), interval=2))
    with torch.no_grad():
        key = model.keyframe_step(frames[0])
        expected = model.labels(model.propagation_step(key, frames[1]), (64, 96))
    assert torch.equal(results[1].labels, expected)


def test_loop_streams_and_memory_does_not_grow(model):
    consumed = []

    def frames():
        for i, f in enumerate(_frames(200, size=(32, 48))):
            consumed.append(i)
            yield f

    it = segment_frames(model, frames(), interval=4)
    first = next(it)
    assert first.index == 0 and consumed == [0]  # one frame in, one result out
    for _ in range(20):
        next(it)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for _ in range(150):
        next(it)
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert grown < 256 * 1024, f"python heap grew by {grown} bytes over 150 frames"


def test_interval_must_be_positive(model):
    with pytest.raises(ValueError, match="interval"):
        KeyframeScheduler(model, 0)
