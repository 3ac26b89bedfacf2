"""Two static state slots shared by the steps of a GPU backend, without ever clobbering a live state.

A GPU step reads the state from slot ``p`` and writes the new one into slot ``q = 1 - p``, so
its buffers (and a CUDA graph captured for each direction) are fixed. The ``PropagationState`` handed out
views its slot. Before a slot is overwritten, any handed-out ``PropagationState`` still alive in it (held
by another stream, a test, ...) is evicted: its arrays are replaced by copies. A single stream
therefore never copies; interleaved streams stay correct. The arrays of a ``PropagationState`` are valid
while that ``PropagationState`` object is alive.

Array-type agnostic (``copy``/``clone`` are given), so it is tested with numpy on the CPU.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable

from .base import PropagationState

Array = Any


class StateSlots:
    """Slot bookkeeping for one batch size.

    slots: two States of static arrays (slot 0 and slot 1).
    copy(dst, src): copy array ``src`` into the static array ``dst`` (same shape and dtype).
    clone(src): a fresh array holding a copy of ``src``.
    """

    def __init__(self, slots: tuple[PropagationState, PropagationState], copy: Callable[[Array, Array], None],
                 clone: Callable[[Array], Array]) -> None:
        self.slots = slots
        self._copy = copy
        self._clone = clone
        self._owner: list[weakref.ref | None] = [None, None]  # the PropagationState handed out for each slot
        self._age = [0, 0]  # when each slot was last handed out (evict the older one first)
        self._clock = 0
        self.evictions = 0  # copies made to protect live states (0 for a single stream)

    def _live(self, index: int) -> PropagationState | None:
        ref = self._owner[index]
        state = ref() if ref is not None else None
        if state is not None and state.scores is self.slots[index].scores:
            return state
        self._owner[index] = None
        return None

    def holding(self, state: PropagationState) -> int | None:
        """The slot whose handed-out PropagationState is ``state``, if any."""
        for index in (0, 1):
            if self._live(index) is state:
                return index
        return None

    def output_slot(self, avoid: int | None = None) -> int:
        """The slot to write next (not ``avoid``); a live PropagationState there is evicted first."""
        if avoid is not None:
            index = 1 - avoid
        else:
            free = [i for i in (0, 1) if self._live(i) is None]
            index = free[0] if free else min((0, 1), key=lambda i: self._age[i])
        self._evict(index)
        return index

    def input_slot(self, state: PropagationState) -> int:
        """The slot holding ``state``'s data: where it already is, else copied into a free slot."""
        index = self.holding(state)
        if index is not None:
            return index
        index = self.output_slot()
        self._copy(self.slots[index].scores, state.scores)
        self._copy(self.slots[index].small, state.small)
        return index

    def hand_out(self, index: int) -> PropagationState:
        """A new PropagationState viewing slot ``index`` (what a step returns)."""
        state = PropagationState(scores=self.slots[index].scores, small=self.slots[index].small)
        self._owner[index] = weakref.ref(state)
        self._clock += 1
        self._age[index] = self._clock
        return state

    def _evict(self, index: int) -> None:
        state = self._live(index)
        if state is not None:
            state.scores, state.small = self._clone(state.scores), self._clone(state.small)
            self.evictions += 1
        self._owner[index] = None
