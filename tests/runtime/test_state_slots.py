"""State slot bookkeeping of the GPU backends, with numpy arrays standing in for device tensors."""

from __future__ import annotations

import numpy as np

from runtime.backends.base import PropagationState
from runtime.backends.state_slots import StateSlots


def make_slots() -> StateSlots:
    slots = tuple(PropagationState(np.zeros((1, 2, 3, 4), np.float16), np.zeros((1, 3, 3, 4), np.float16)) for _ in (0, 1))

    def copy(dst: np.ndarray, src: np.ndarray) -> None:
        dst[...] = src

    return StateSlots(slots, copy, np.copy)


def step(slots: StateSlots, state: PropagationState | None, value: float) -> PropagationState:
    """What a backend step does: pick slots, write the new state into the output slot."""
    p = None if state is None else slots.input_slot(state)
    q = slots.output_slot(avoid=p)
    slots.slots[q].scores[...] = value
    slots.slots[q].small[...] = value
    return slots.hand_out(q)


def test_single_stream_alternates_slots_without_copies():
    slots = make_slots()
    state = step(slots, None, 1.0)
    seen = [slots.holding(state)]
    for value in range(2, 8):
        state = step(slots, state, value)
        seen.append(slots.holding(state))
    assert seen == [0, 1, 0, 1, 0, 1, 0]
    assert slots.evictions == 0 and float(state.scores.max()) == 7.0


def test_a_state_still_held_is_copied_out_before_its_slot_is_overwritten():
    slots = make_slots()
    first = step(slots, None, 1.0)
    second = step(slots, first, 2.0)
    third = step(slots, second, 3.0)  # writes the slot `first` lives in
    assert slots.evictions == 1
    assert float(first.scores.max()) == 1.0 and float(second.scores.max()) == 2.0 and float(third.scores.max()) == 3.0
    assert first.scores is not slots.slots[slots.holding(third)].scores


def test_interleaved_streams_keep_their_states():
    slots = make_slots()
    a = step(slots, None, 10.0)
    b = step(slots, None, 20.0)  # the free slot
    assert {slots.holding(a), slots.holding(b)} == {0, 1}
    for k in range(1, 4):
        a = step(slots, a, 10.0 + k)
        b = step(slots, b, 20.0 + k)
    assert float(a.scores.max()) == 13.0 and float(b.small.min()) == 23.0


def test_a_foreign_state_is_copied_into_a_slot():
    slots = make_slots()
    foreign = PropagationState(np.full((1, 2, 3, 4), 5.0, np.float16), np.full((1, 3, 3, 4), 6.0, np.float16))
    index = slots.input_slot(foreign)
    assert float(slots.slots[index].scores.max()) == 5.0 and float(slots.slots[index].small.max()) == 6.0
    assert slots.holding(foreign) is None  # the foreign arrays stay the caller's


def test_keyframe_prefers_a_free_slot_then_the_oldest():
    slots = make_slots()
    a = step(slots, None, 1.0)
    b = step(slots, None, 2.0)
    c = step(slots, None, 3.0)  # both slots live: the older (a's) is evicted
    assert slots.evictions == 1 and slots.holding(c) == 0 and float(a.scores.max()) == 1.0
    assert slots.holding(b) == 1
