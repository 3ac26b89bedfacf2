"""python -m benchmarks.gpu_acceptance: every GPU check of this project in one command.

``plan`` decides which checks run on this machine and with what time budget, ``checks`` runs
them, ``report`` writes the JSON + PNG and prints a verdict per check. See docs/gpu.md,
"Acceptance on a GPU machine", for what it needs installed.
"""
