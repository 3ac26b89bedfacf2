"""A video clip prepared for propagation training: everything on the 1/8 grid.

The keyframe net is frozen, so its scores on every frame are computed once and cached; the
propagation nets only ever see 1/8-grid tensors, which makes end-to-end training cheap on CPU.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from gsvnet import GSVNet
from gsvnet.model import grid_size

from .flow_targets import dis_flow

#: uint8 frames [N,H,W,3] -> a float tensor [N,...] on the CPU (the 1/8 frames, the scores)
FrameFunction = Callable[[np.ndarray], torch.Tensor]


@dataclass
class PreparedClip:
    small: torch.Tensor  # [T,3,h,w] normalised 1/8 frames (GSVNet.downsample)
    scores: torch.Tensor  # [T,C,h,w] frozen keyframe net scores on the 1/8 grid
    flow_forward: torch.Tensor  # [T,2,h,w] DIS flow t -> t-1 (grid pixels; zero at t=0)
    flow_reverse: torch.Tensor  # [T,2,h,w] DIS flow t -> t+1 (zero at the last frame)

    @property
    def teacher(self) -> torch.Tensor:
        """[T,h,w] int64: the keyframe net's own label on every frame (the distillation target)."""
        return self.scores.argmax(dim=1)

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "PreparedClip":
        return PreparedClip(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})

    def to(self, device: torch.device | str) -> "PreparedClip":
        """The same clip with every tensor on ``device`` (training runs there)."""
        return self._map(lambda t: t.to(device))

    def frames(self, index: range) -> "PreparedClip":
        """The frames ``index`` (a contiguous range) of every tensor."""
        return self._map(lambda t: t[index.start : index.stop])


def keyframe_scores(model: GSVNet, frames: np.ndarray, batch: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """(small [T,3,h,w], scores [T,C,h,w]) of uint8 frames [T,H,W,3] with the model's keyframe path
    (run on the model's device, returned on the CPU)."""
    smalls, scores = [], []
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(frames), batch):
            x = torch.from_numpy(np.ascontiguousarray(frames[i : i + batch])).to(model.mean.device)
            smalls.append(model.downsample(x).cpu())
            scores.append(model.keyframe_scores(x).cpu())
    return torch.cat(smalls), torch.cat(scores)


def prepare_clip(video: str | Path, size: tuple[int, int], downsample: FrameFunction, scores: FrameFunction,
                 cache: Path | None, key: dict, limit: int | None = None, batch: int = 4) -> PreparedClip:
    """``video``'s 1/8 frames, ``scores`` of every frame and the DIS flows between neighbours,
    decoded once and streamed ``batch`` frames at a time (only the 1/8-grid tensors are kept, about
    0.5 MB a frame at 544x960 with 11 classes, not the frames); kept in ``cache`` under ``key`` and
    reused while the key is the same."""
    from evaluation.clips import iter_video
    from gsvnet.checkpoint import atomic_torch_save

    if cache is not None and cache.is_file():
        saved = torch.load(cache, map_location="cpu", weights_only=True)
        if saved.get("key") == key:
            print(f"using the clip's scores and flows cached in {cache}", flush=True)
            return PreparedClip(saved["small"], saved["scores"], saved["flow_forward"], saved["flow_reverse"])
    started, grid = time.time(), grid_size(size)
    smalls, outs, forward, reverse, pending = [], [], [], [], []
    previous = None

    def flush() -> None:
        chunk = np.stack(pending)
        smalls.append(downsample(chunk))
        outs.append(scores(chunk))
        pending.clear()

    with torch.inference_mode():
        for frame in iter_video(video, size, limit):
            if previous is None:
                forward.append(np.zeros((2, *grid), np.float32))
            else:
                forward.append(dis_flow(frame, previous, grid))
                reverse.append(dis_flow(previous, frame, grid))
            pending.append(frame)
            previous = frame
            if len(pending) == batch:
                flush()
        if pending:
            flush()
    if previous is None:
        raise ValueError(f"{video} has no frames")
    reverse.append(np.zeros((2, *grid), np.float32))
    clip = PreparedClip(torch.cat(smalls), torch.cat(outs), torch.from_numpy(np.stack(forward)),
                        torch.from_numpy(np.stack(reverse)))
    if cache is not None:
        atomic_torch_save({"key": key, "small": clip.small, "scores": clip.scores, "flow_forward": clip.flow_forward,
                           "flow_reverse": clip.flow_reverse}, cache)
    print(f"prepared {len(clip.small)} frames of {video} at {size[0]}x{size[1]} in {time.time() - started:.0f} s"
          + (f" (cached in {cache})" if cache is not None else ""), flush=True)
    return clip


def sample_sequences(clip: PreparedClip, starts: np.ndarray, length: int, reverse: np.ndarray, flip: np.ndarray,
                     crop: tuple[int, int] | None, rng: np.random.Generator,
                     strides: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    """A batch of ``length``+1 frames per start index (keyframe first), consecutive or, with
    ``strides[b]`` > 1, every strides[b]-th frame (a lower frame rate: larger motion per step).

    reverse[b] plays the sequence backwards (starting at starts[b] + length; the propagation trainer
    plays forward only, as the deployed pipeline does), flip[b] mirrors it
    horizontally; crop takes one random (h, w) window per sequence. Returns
    small [B,L+1,3,h,w], scores [B,L+1,C,h,w], flow [B,L+1,2,h,w] (flow[:,i] = i -> i-1, DIS),
    teacher [B,L+1,h,w]; the DIS flow is between consecutive frames, so a sequence with a stride
    above 1 has NaN flow (it must not be used as a target).
    """
    out: dict[str, list[torch.Tensor]] = {"small": [], "scores": [], "flow": [], "teacher": []}
    h, w = clip.small.shape[-2:]
    for b, start in enumerate(starts):
        stride = 1 if strides is None else int(strides[b])
        idx = np.arange(start, start + stride * length + 1, stride)
        flows = clip.flow_forward
        if reverse[b]:
            idx = idx[::-1].copy()
            flows = clip.flow_reverse
        items = {"small": clip.small[idx], "scores": clip.scores[idx], "flow": flows[idx].clone()}
        items["flow"][0] = 0.0  # the keyframe has no predecessor in the sequence
        if stride > 1:
            items["flow"].fill_(float("nan"))
        if flip[b]:
            items = {k: v.flip(-1) for k, v in items.items()}
            items["flow"][:, 0] = -items["flow"][:, 0]
        if crop is not None:
            ch, cw = min(crop[0], h), min(crop[1], w)
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            items = {k: v[..., y : y + ch, x : x + cw] for k, v in items.items()}
        items["teacher"] = items["scores"].argmax(dim=1)
        for k, v in items.items():
            out[k].append(v)
    return {k: torch.stack(v) for k, v in out.items()}
