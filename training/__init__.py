"""Training and evaluation helpers for the project's own GSVNet weights (not on the runtime path).

- ``python -m training.keyframe``: the keyframe net on CamVid, from scratch (resumable).
- ``python -m training.propagation``: flow, intra and guiding nets on real video by distillation
  from the frozen keyframe net (flow pre-trained against OpenCV DIS).
- ``python -m training.ship``: FP16 weights and provenance into ``gsvnet/weights/``.
Measured accuracy: ``python -m evaluation`` (evaluation.metrics, evaluation.protocol; datasets in gsvnet.datasets).
"""
