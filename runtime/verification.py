"""First-use verification: a backend proves itself on this machine before it segments anything.

The build stores real frames and the PyTorch reference's labels for them in the engines folder
(engine_format/verification_set.py; written by export/verification_set.py). The first time a backend runs an engines folder on a machine, it
segments those frames (a keyframe step, then propagation steps) and its labels must equal the
reference on at least 99.5% of the pixels of every frame. The verdict is kept in
``ENGINES/verified.json`` under a key made of everything the result depends on (the sha256 of
every file the backend runs, the backend and its precision, the device, the library versions),
so it costs once; a changed file, driver or library is checked again.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from engine_format.manifest import Manifest, ManifestError, verify_file, write_json_atomic
from engine_format.verification_set import MIN_AGREEMENT, engine_frames, read_verification_set

if TYPE_CHECKING:
    from .backends.base import Backend

VERDICTS = "verified.json"
#: verify: check unless a kept verdict covers this backend ('auto'), always ('force'), never ('skip')
Mode = Literal["auto", "force", "skip"]


@dataclass
class Verdict:
    """What the first-use check found (``status``: passed, failed, skipped, unavailable, reference)."""

    status: str
    backend: str
    detail: str
    agreement: list[float] = field(default_factory=list)
    cached: bool = False
    seconds: float = 0.0
    key: str = ""

    @property
    def passed(self) -> bool:
        return self.status != "failed"

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        """One line for the log."""
        kept = " (kept verdict)" if self.cached else ""
        return f"verification: {self.backend} {self.status}{kept}: {self.detail}"


def identity(backend: "Backend") -> dict:
    """Everything the backend's labels depend on besides the frames (the verdict's key)."""
    return {"backend": backend.name, "precision": backend.precision, "files": backend.exercised_files(),
            "device": backend.device_identity(), "versions": backend.library_versions()}


def identity_key(ident: dict) -> str:
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def _reference(manifest: Manifest, backend: "Backend") -> tuple[np.ndarray, np.ndarray, str] | None:
    """(engine-size frames, reference labels, which reference) or None if the folder has no set."""
    entry = manifest.data.get("verification")
    if not entry:
        return None
    data = read_verification_set(verify_file(manifest, entry, "verification set"))
    which = "int8" if backend.precision.startswith("int8") and "labels_int8" in data else "fp32"
    return engine_frames(data["frames"], manifest.frame_size), data[f"labels_{which}"], which


def check_labels(backend: "Backend", frames: np.ndarray, reference: np.ndarray) -> list[float]:
    """Share of pixels per frame on which ``backend`` (frame 0 a keyframe, then propagation
    steps) gives the reference label; the labels are taken at the engine size."""
    agreement, state = [], None
    for k, frame in enumerate(frames):
        batch = frame[None]
        state = backend.keyframe_step(batch) if k == 0 else backend.propagation_step(state, batch)
        labels = np.asarray(backend.labels(state, backend.frame_size))[0]
        agreement.append(float(np.mean(labels == reference[k])))
    return agreement


def _load_verdicts(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def verify_backend(backend: "Backend", mode: Mode = "auto", log=print) -> Verdict:
    """Check ``backend`` on its engines folder's verification set (or reuse the kept verdict)."""
    name = backend.name
    if mode == "skip":
        return Verdict("skipped", name, "--no-verify: the backend's labels were not checked against the reference")
    if name == "torch":
        return Verdict("reference", name, "the PyTorch reference itself (the verification labels come from it)")
    manifest = backend.manifest
    try:
        reference = _reference(manifest, backend)
    except ManifestError as e:
        return Verdict("failed", name, str(e))
    if reference is None:
        return Verdict("unavailable", name, f"{manifest.folder} has no verification set (built by an older version); "
                                            f"rebuild it with `python -m export.build_engines --out {manifest.folder}` "
                                            "to have backends checked on first use")
    frames, labels, which = reference
    ident = identity(backend)
    key = identity_key(ident)
    store = manifest.folder / VERDICTS
    verdicts = _load_verdicts(store)
    if mode == "auto" and key in verdicts:
        kept = verdicts[key]
        return Verdict(kept["status"], name, kept["detail"], kept.get("agreement", []), cached=True, key=key)
    started = time.perf_counter()
    try:
        agreement = check_labels(backend, frames, labels)
        kernels = backend.kernel_checks(frames)
    except Exception as e:  # a kernel that fails on this GPU is a failed verification, not a crash
        from .errors import first_line

        verdict = Verdict("failed", name, f"running the verification frames failed ({first_line(e)})", key=key)
    else:
        worst = int(np.argmin(agreement))
        where = f"{len(frames)} real frames (a keyframe, {len(frames) - 1} propagated) vs the {which.upper()} reference labels"
        if kernels:
            verdict = Verdict("failed", name, "; ".join(kernels), agreement, key=key)
        elif agreement[worst] >= MIN_AGREEMENT:
            detail = f"labels equal on {100 * agreement[worst]:.2f}% of the pixels (worst frame) of {where}"
            verdict = Verdict("passed", name, detail, agreement, key=key)
        else:
            detail = (f"labels equal on only {100 * agreement[worst]:.2f}% of the pixels of frame {worst} "
                      f"(needs {100 * MIN_AGREEMENT:.1f}%) on {where}")
            verdict = Verdict("failed", name, detail, agreement, key=key)
    verdict.seconds = round(time.perf_counter() - started, 3)
    verdicts[key] = {**{k: v for k, v in verdict.to_dict().items() if k not in ("cached", "key")}, "identity": ident,
                     "checked": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    try:
        write_json_atomic(store, verdicts)
    except OSError as e:
        log(f"verification: could not keep the verdict in {store} ({e.strerror or e}); it will be checked again next time")
    return verdict
