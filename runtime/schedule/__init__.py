"""The keyframe / propagation schedule: which frames run the keyframe net, which are propagated.

``core`` is the rule and its plain scheduler (pure Python: importing ``runtime.schedule`` imports
neither torch nor numpy, so an onnxruntime- or OpenVINO-only deployment runs without PyTorch);
beside it the variants a run picks from (``dispatch``): ``lookahead`` (one stream, keyframe steps
computed ahead on worker threads), ``multistream`` (several streams batched, keyframes staggered),
and ``torch_stepper`` (the PyTorch ``GSVNet`` as a numpy-in / numpy-out stepper, for evaluation
and training). Every variant follows the rule written in docs/architecture.md
(tests/runtime/schedule/test_schedule_rule.py).
"""

from .core import KeyframeScheduler, PropagationState, Stepper, StepResult

__all__ = ["KeyframeScheduler", "PropagationState", "StepResult", "Stepper"]
