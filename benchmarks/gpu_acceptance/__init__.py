"""python -m benchmarks.gpu_acceptance: every GPU check of this project in one command.

``plan`` decides which checks run on this machine and with what time budget (``builds``: the
engines folders they share and how long building them takes), ``context`` holds what the checks
share (the output folder, the real frames, builds and commands under a time limit), ``checks``
runs them, ``report`` writes the JSON + PNG and prints a verdict per check and overall. See
docs/gpu.md, "Acceptance on a GPU machine", for what it needs installed.
"""
