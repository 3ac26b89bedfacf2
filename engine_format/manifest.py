"""The engines folder's manifest: what was built, from what, and how it was checked.

One JSON file, ``manifest.json``, describes every artefact in the folder (ONNX graphs, TensorRT
engines, the checkpoint the graphs came from). The runtime trusts nothing it does not describe:
``load_manifest`` checks the format, that every listed file exists and that its sha256 matches.
This module imports neither torch nor onnx, so the runtime can use it anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

#: the stage graphs of an engines folder, in build order (what each computes: engine_format/stages.py)
STAGES = ("downsample", "keyframe", "flow", "warp", "intra", "guide", "filter", "labels")

FORMAT = "gsvnet-engines"
VERSION = 1
MANIFEST_NAME = "manifest.json"
BUILD_HINT = "python -m export.build_engines"


class ManifestError(RuntimeError):
    """The engines folder cannot be used; the message says which file and which command fixes it."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def build_key(checkpoint_sha: str, config: dict, size: tuple[int, int], opset: int, custom_ops: str, versions: dict,
              quantization: dict | None = None) -> str:
    """Everything the ONNX graphs depend on, hashed: equal keys mean the graphs can be reused.
    ``quantization``: the calibration record of an INT8 keyframe graph (None: FP32 graphs)."""
    relevant = {"checkpoint": checkpoint_sha, "config": config, "size": list(size), "opset": opset,
                "custom_ops": custom_ops, "precision": "fp32",
                "versions": {k: versions[k] for k in ("gsvnet", "torch", "onnx")}}
    if quantization is not None:
        relevant.update(precision="int8", quantization=quantization, onnxruntime=versions.get("onnxruntime"))
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


def write_json_atomic(path: Path, payload: dict) -> None:
    """Write JSON to a temporary file beside ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2, sort_keys=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class Manifest:
    """In-memory view of manifest.json (``data`` is the parsed JSON, ``folder`` where it lives)."""

    folder: Path
    data: dict = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.folder / MANIFEST_NAME

    @property
    def model(self) -> dict:
        return self.data["model"]

    @property
    def frame_size(self) -> tuple[int, int]:
        return tuple(self.data["frame_size"])  # type: ignore[return-value]

    @property
    def graphs(self) -> dict[str, dict]:
        return self.data.get("graphs", {})

    @property
    def engines(self) -> dict[str, dict]:
        return self.data.get("engines", {})

    def file(self, relative: str) -> Path:
        return self.folder / relative

    def save(self) -> None:
        write_json_atomic(self.path, self.data)


def read_manifest(folder: str | os.PathLike) -> Manifest:
    """Parse the manifest (structure only; see ``verify_files``)."""
    folder = Path(folder)
    hint = f"run `{BUILD_HINT} --out {folder}` first"
    if not folder.exists():
        raise ManifestError(f"engines folder {folder} does not exist; {hint}")
    if not folder.is_dir():
        raise ManifestError(f"engines path {folder} is not a folder; {hint}")
    path = folder / MANIFEST_NAME
    if not path.exists():
        raise ManifestError(f"no manifest.json in {folder} (nothing built there); {hint}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path} is not valid JSON ({e.msg if hasattr(e, 'msg') else e}); rebuild with `{BUILD_HINT} --out {folder} --force`") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ManifestError(f"{path} is not a GSVNet engines manifest; rebuild with `{BUILD_HINT} --out {folder} --force`")
    if data.get("version") != VERSION:
        raise ManifestError(f"{path} has manifest version {data.get('version')}, this package reads {VERSION}; "
                            f"rebuild with `{BUILD_HINT} --out {folder} --force`")
    for key in ("model", "frame_size", "graphs", "checkpoint"):
        if key not in data:
            raise ManifestError(f"{path} lacks '{key}'; rebuild with `{BUILD_HINT} --out {folder} --force`")
    return Manifest(folder, data)


def verify_file(manifest: Manifest, entry: dict, what: str) -> Path:
    """Check one described file exists and matches its sha256; return its path."""
    path = manifest.file(entry["file"])
    fix = f"rebuild with `{BUILD_HINT} --out {manifest.folder} --force`"
    if not path.is_file():
        raise ManifestError(f"{what} file {path} listed in {manifest.path} is missing; {fix}")
    if sha256_file(path) != entry["sha256"]:
        raise ManifestError(f"{what} file {path} does not match the sha256 in {manifest.path} (modified or corrupt); {fix}")
    return path


def load_manifest(folder: str | os.PathLike, needed_graphs: tuple[str, ...] = ()) -> Manifest:
    """Read the manifest and verify the checkpoint and the graphs that will be used."""
    manifest = read_manifest(folder)
    for name in needed_graphs:
        if name not in manifest.graphs:
            raise ManifestError(f"{manifest.path} has no '{name}' graph; rebuild with `{BUILD_HINT} --out {manifest.folder} --force`")
        verify_file(manifest, manifest.graphs[name], f"'{name}' graph")
    verify_file(manifest, manifest.data["checkpoint"], "checkpoint")
    return manifest
