"""Mixed precision for training: which autocast dtype a device runs natively, and the context."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

AMP_DTYPES = {"bf16": torch.bfloat16}  # no fp16: it would need loss scaling, and bf16 does not


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """True where the CPU has bfloat16 dot products (AVX-512 BF16 or AMX), from /proc/cpuinfo's flags."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.is_file() else ""
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def pick_amp(name: str, device: torch.device) -> torch.dtype | None:
    """``auto``: bfloat16 where the device computes it natively (CPU flags, or a GPU that supports it),
    else None (FP32); ``off`` -> None; ``bf16`` as asked."""
    if name == "off":
        return None
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
        return torch.bfloat16 if cpu_has_native_bf16() else None
    if name not in AMP_DTYPES:
        raise SystemExit(f"error: --amp {name} is not supported; use auto, bf16 or off")
    return AMP_DTYPES[name]


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """torch.autocast for ``device`` in ``dtype``, or a no-op context when dtype is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
