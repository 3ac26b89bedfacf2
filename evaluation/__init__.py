"""Accuracy measurement, beside the benchmarks and above the runtime it measures: the evaluation
command (``python -m evaluation``: CamVid, the CamVid sequence protocol, videos against a teacher,
Cityscapes), the protocol (mIoU by distance from the keyframe), the metrics, and whole short clips
in memory (``clips``). Dataset readers live below, in ``gsvnet.datasets``; training imports this
package so what it selects on is what is reported.
"""
