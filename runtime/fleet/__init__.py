"""Many videos on many GPUs and machines: ``python -m runtime.fleet`` runs ``runtime.infer``'s
per-video code on Ray workers, one per GPU (or per few CPU cores), and schedules whole videos to
idle workers.

- ``plan``: which videos, each video's output folder, which ones are already complete
- ``outdir``: the output folder's lock, staging area and the rename that publishes a video
- ``worker``: the Ray actor (engines loaded once; ``segment`` one video at a time)
- ``cluster``: joining or starting Ray, sizing and starting the workers
- ``scheduler``: the driver loop (assignment, retries after worker deaths, a clean stop)
- ``report``: progress bar, ``summary.json``, final table
- ``job`` / ``cli``: one job from start to end; the command line

Ray is an optional dependency (``pip install -e '.[cluster]'``); it is imported only when a job
needs the cluster.
"""
