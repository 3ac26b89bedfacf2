"""GSVNet checkpoints: one file with the state dict, the config (classes, palette,
normalisation included) and free-form metadata. Loaded with ``weights_only=True``: a file that
needs arbitrary code to unpickle is refused, never executed."""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Mapping

import torch

from .model import GSVNet, GSVNetConfig

FORMAT = "gsvnet-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, not ours, or does not fit the model."""


def save_checkpoint(path: str | os.PathLike, model: GSVNet, metadata: Mapping | None = None, half: bool = False) -> Path:
    """Write ``model`` to ``path`` atomically (temporary file + rename). ``half`` stores floats as FP16."""
    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        state[k] = v.half() if half and v.is_floating_point() else v.clone()
    payload = {"format": FORMAT, "version": VERSION, "config": model.config.to_dict(),
               "state_dict": state, "metadata": dict(metadata or {})}
    return atomic_torch_save(payload, path)


def atomic_torch_save(obj: object, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, renamed over it only once complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with open(tmp, "wb") as f:  # a file object: the archive's inner name does not depend on the temporary name
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_weights_only(path: Path, foreign: str, allowed: tuple[type, ...] = ()) -> object:
    """``torch.load`` that never executes code: tensors, plain data and the ``allowed`` classes.
    Errors become one-line CheckpointErrors; ``foreign`` says what to do with a file holding other objects."""
    try:
        with torch.serialization.safe_globals(list(allowed)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path} holds objects other than tensors and plain data, which are never unpickled "
                              f"({str(e).splitlines()[0][:120]}); {foreign}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is truncated or corrupt ({str(e).splitlines()[0][:120]}); re-download or re-save it") from None


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Read and validate the file's structure (not yet whether it fits a model)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint path is not a file: {path}")
    payload = load_weights_only(path, "it is not a GSVNet checkpoint (save one with gsvnet.checkpoint.save_checkpoint)")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a GSVNet checkpoint (no '{FORMAT}' marker); "
                              "convert other checkpoints with gsvnet.official or save one with gsvnet.checkpoint.save_checkpoint")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {payload.get('version')}, this package reads version {VERSION}")
    for key in ("config", "state_dict"):
        if not isinstance(payload.get(key), dict):
            raise CheckpointError(f"{path} lacks its '{key}' section")
    return payload


def check_state_dict_fits(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise CheckpointError naming missing, unexpected and mis-shaped keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    misshaped = sorted(f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                       for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or misshaped:
        def show(xs: list[str]) -> str:
            return ", ".join(xs[:4]) + (f" (+{len(xs) - 4} more)" if len(xs) > 4 else "")
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: {show(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected: {show(unexpected)}")
        if misshaped:
            parts.append(f"{len(misshaped)} mis-shaped: {show(misshaped)}")
        raise CheckpointError(f"{source} does not fit the model: " + "; ".join(parts))


def load_checkpoint(path: str | os.PathLike, **overrides) -> tuple[GSVNet, dict]:
    """Build the GSVNet described by the checkpoint, load its weights, return (model in eval mode, metadata).

    ``overrides`` replace config fields that do not change the weights (e.g. ``key_scale``).
    """
    payload = read_checkpoint(path)
    try:
        config = GSVNetConfig.from_dict({**payload["config"], **overrides})
        model = GSVNet(config)
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path} has an invalid config: {e}") from None
    check_state_dict_fits(model, payload["state_dict"], str(path))
    model.load_state_dict(payload["state_dict"])
    return model.eval(), dict(payload.get("metadata", {}))
