"""Loading a backend as every entry point runs it: selection, the CPU thread plan, and the
first-use verification, moving on to the next backend when one fails (``--backend auto``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

from engine_format.manifest import Manifest, ManifestError

from .backends import GPU_BACKENDS, PREFERENCE, create_backend, precision_note, precision_unavailable, unavailable_reason
from .backends.base import Backend
from .errors import UserError, first_line
from .verification import Mode, Verdict, verify_backend


@dataclass
class LoadedBackend:
    backend: Backend
    why: str  # why this backend (and, for auto, why the better ones were skipped)
    verdict: Verdict


def create_planned(name: str, manifest: Manifest, threads: int, profile: bool, retune: bool = False,
                   log: Callable[[str], None] = print, precision: str | None = None) -> Backend:
    """Backend ``name`` at ``precision`` (None: its default) with the per-graph thread plan within
    the CPU budget ``threads`` (0: the usable cores; tuned once per engines folder and
    machine, runtime/tuning.py)."""
    from .tuning import thread_plan
    from .threads import usable_cores

    if (why := precision_unavailable(name, manifest, precision)) is not None:
        raise UserError(f"backend {name} cannot run --precision {precision}: {why}")
    plan = thread_plan(name, manifest, threads or usable_cores(), retune, log, precision)
    return create_backend(name, manifest, threads=threads, profile=profile, plan=plan, precision=precision)


def _auto_candidates(manifest: Manifest, threads: int, interval: int, precision: str | None, retune: bool,
                     log: Callable[[str], None], skipped: list[str]) -> Iterator[tuple[str, str | None, str, bool]]:
    """What ``auto`` tries, in order, as (backend, precision, why, whether to tune its
    threads again): the GPU backends that are available; then the CPU engines and precisions by
    measurement (runtime/tuning.py ``choose_cpu``, only when the GPUs gave nothing); then
    the PyTorch reference. Each one left out adds a clause to ``skipped``."""
    from .tuning import choose_cpu
    from .threads import usable_cores

    for name in (n for n in PREFERENCE if n in GPU_BACKENDS):
        why = unavailable_reason(name, manifest) or precision_unavailable(name, manifest, precision)
        if why is None:
            yield name, precision, "best available", retune
        else:
            skipped.append(f"{name}: {why}")
    order, left_out = choose_cpu(manifest, threads or usable_cores(), interval, precision, retune, log)
    skipped += left_out
    measured = len(order) > 1  # then choose_cpu timed them (with --tune, again)
    for rank, candidate in enumerate(order):
        why = "fastest measured CPU engine" if rank == 0 and measured else "best available"
        yield candidate.engine, candidate.precision, why, retune and not measured
    if (why := precision_unavailable("torch", manifest, precision)) is None:
        yield "torch", precision, "best available", False
    else:
        skipped.append(f"torch: {why}")


def load_backend(requested: str, manifest: Manifest, threads: int = 0, profile_stages: bool = False,
                 retune: bool = False, verify: Mode = "auto", log: Callable[[str], None] = print,
                 precision: str | None = None, interval: int = 4) -> LoadedBackend:
    """The backend ``requested`` ('auto' or a name) loaded at ``precision`` ('f32', 'bf16',
    'int8'; None: the backend's default for the folder) and verified on this machine.

    ``auto`` tries the GPU backends (tensorrt > torch-cuda > onnxruntime-cuda), then the CPU
    engine and precision measured fastest here at keyframe interval ``interval`` among those
    that keep the FP32 results (runtime/tuning.py ``choose_cpu``), then the others, then
    torch; it takes the first that loads and passes verification, with one line for each that
    failed; an explicit name that cannot run or fails verification is a UserError (exit 2).
    CPU backends always time their stages; GPU backends only with ``profile_stages``.
    """
    skipped: list[str] = []
    if requested != "auto":
        why = unavailable_reason(requested, manifest)
        if why is not None:
            raise UserError(f"backend {requested} is not available here: {why}; try --backend auto")
        if (why := precision_unavailable(requested, manifest, precision)) is not None:
            raise UserError(f"backend {requested} cannot run --precision {precision}: {why}")
        return _load(requested, precision, "asked for", manifest, threads, profile_stages, retune, verify, log,
                     skipped, explicit=True)
    for name, chosen, why, again in _auto_candidates(manifest, threads, interval, precision, retune, log, skipped):
        loaded = _load(name, chosen, why, manifest, threads, profile_stages, again, verify, log, skipped, explicit=False)
        if loaded is not None:
            return loaded
    raise UserError("no backend can run here: " + "; ".join(skipped))


def _load(name: str, precision: str | None, why: str, manifest: Manifest, threads: int, profile_stages: bool,
          retune: bool, verify: Mode, log: Callable[[str], None], skipped: list[str],
          explicit: bool) -> LoadedBackend | None:
    """Backend ``name`` loaded and verified; None (with a line and a clause in ``skipped``) if it
    fails and ``auto`` may move on; a UserError if it fails and was asked for."""
    profile = profile_stages or name not in GPU_BACKENDS
    try:
        backend = create_planned(name, manifest, threads, profile, retune, log, precision)
    except (UserError, ManifestError):  # the folder itself is wrong: no other backend should hide it
        raise
    except Exception as e:  # e.g. an engine that does not deserialise on this GPU
        if explicit:
            raise UserError(f"backend {name} failed to load: {first_line(e)}") from None
        log(f"{name} failed to load ({first_line(e)}); trying the next backend")
        skipped.append(f"{name}: failed to load")
        return None
    verdict = verify_backend(backend, verify, log)
    if verdict.passed:
        if verdict.status != "passed" or not verdict.cached:
            log(verdict.line())
        later = f" ({'; '.join(skipped)})" if skipped else ""
        return LoadedBackend(backend, f"{why}; {precision_note(name, manifest, precision)}{later}", verdict)
    backend.close()
    if explicit:
        raise UserError(f"{verdict.line()}; not using it (--backend auto picks one that passes, --no-verify skips "
                        "the check)")
    log(f"{verdict.line()}; trying the next backend")
    skipped.append(f"{name}: failed verification" + (f" at {precision}" if precision else ""))
    return None
