"""Loading a backend as every entry point runs it: selection, the CPU thread plan, and the
first-use verification, moving on to the next backend when one fails (``--backend auto``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from engine_format.manifest import Manifest, ManifestError

from .backends import GPU_BACKENDS, PREFERENCE, create_backend, precision_note, unavailable_reason
from .backends.base import Backend
from .errors import UserError, first_line
from .verification import Mode, Verdict, verify_backend


@dataclass
class LoadedBackend:
    backend: Backend
    why: str  # why this backend (and, for auto, why the better ones were skipped)
    verdict: Verdict


def create_planned(name: str, manifest: Manifest, threads: int, profile: bool, recalibrate: bool = False,
                   log: Callable[[str], None] = print) -> Backend:
    """Backend ``name`` with the per-graph thread plan within the CPU budget ``threads`` (0: the
    usable cores; calibrated once per engines folder and machine, runtime/calibration.py)."""
    from .calibration import thread_plan
    from .threads import usable_cores

    plan = thread_plan(name, manifest, threads or usable_cores(), recalibrate, log)
    return create_backend(name, manifest, threads=threads, profile=profile, plan=plan)


def load_backend(requested: str, manifest: Manifest, threads: int = 0, profile_stages: bool = False,
                 recalibrate: bool = False, verify: Mode = "auto", log: Callable[[str], None] = print) -> LoadedBackend:
    """The backend ``requested`` ('auto' or a name) loaded and verified on this machine.

    ``auto`` tries tensorrt > torch-cuda > onnxruntime-cuda > onnxruntime > torch and takes the
    first that is available, loads and passes verification, with one line for each that failed
    verification; an explicit name that cannot run or fails verification is a UserError (exit 2).
    CPU backends always time their stages; GPU backends only with ``profile_stages``.
    """
    explicit = requested != "auto"
    candidates = (requested,) if explicit else PREFERENCE
    skipped: list[str] = []
    for name in candidates:
        why = unavailable_reason(name, manifest)
        if why is not None:
            if explicit:
                raise UserError(f"backend {name} is not available here: {why}; try --backend auto")
            skipped.append(f"{name}: {why}")
            continue
        profile = profile_stages or name not in GPU_BACKENDS
        try:
            backend = create_planned(name, manifest, threads, profile, recalibrate, log)
        except (UserError, ManifestError):  # the folder itself is wrong: no other backend should hide it
            raise
        except Exception as e:  # e.g. an engine that does not deserialise on this GPU
            if explicit:
                raise UserError(f"backend {name} failed to load: {first_line(e)}") from None
            log(f"{name} failed to load ({first_line(e)}); trying the next backend")
            skipped.append(f"{name}: failed to load")
            continue
        verdict = verify_backend(backend, verify, log)
        if verdict.passed:
            if verdict.status != "passed" or not verdict.cached:
                log(verdict.line())
            note = precision_note(name, manifest)
            if explicit:
                return LoadedBackend(backend, f"asked for; {note}", verdict)
            later = f" ({'; '.join(skipped)})" if skipped else ""
            return LoadedBackend(backend, f"best available; {note}{later}", verdict)
        backend.close()
        if explicit:
            raise UserError(f"{verdict.line()}; not using it (--backend auto picks one that passes, --no-verify skips "
                            "the check)")
        log(f"{verdict.line()}; trying the next backend")
        skipped.append(f"{name}: failed verification")
    raise UserError("no backend can run here: " + "; ".join(skipped))
