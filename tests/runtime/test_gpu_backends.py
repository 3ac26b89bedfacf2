"""GPU backends: selection on this machine, the onnxruntime IOBinding path, and (on a GPU) the
torch-cuda and tensorrt backends against the CPU references on the real clip.

Every GPU/TensorRT test skips with a one-line reason where the GPU, the kernels or TensorRT is
missing; the CPU tests use real manifests and graphs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from engine_format.manifest import ManifestError, load_manifest
from engine_format.stages import ALL_STAGES, random_inputs, stage_table
from export.verify import FP16_TOL
from runtime.schedule import KeyframeScheduler
from runtime.backends import create_backend, select_backend, unavailable_reason
from runtime.errors import UserError
from tests.conftest import ENGINE_SIZE, clip_frames, run_module
from tests.export.helpers import make_manifest

CLIP_FRAMES = 16
INTERVAL = 4


def clip_labels(backend, frames: list[np.ndarray]) -> np.ndarray:
    results = KeyframeScheduler(backend, INTERVAL, label_size=ENGINE_SIZE).run(iter(frames))
    return np.concatenate([r.labels for r in results])


def tolerance_report(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray], atol: float, rtol: float,
                     names: tuple[str, str] = ("reference", "candidate")) -> tuple[bool, list[str]]:
    """Per-output comparison with polygraphy's Comparator (elementwise |a-b| <= atol or <= rtol |a|),
    plus one line per output: max abs / rel error. uint8 outputs report the differing fraction."""
    from polygraphy.comparator import Comparator, IterationResult, RunResults, SimpleCompareFunc
    from polygraphy.logger import G_LOGGER

    floats = {k for k, v in reference.items() if v.dtype.kind == "f"}
    lines, ok = [], True
    if floats:
        results = RunResults([(names[0], [IterationResult({k: reference[k].astype(np.float32) for k in floats}, runner_name=names[0])]),
                              (names[1], [IterationResult({k: candidate[k].astype(np.float32) for k in floats}, runner_name=names[1])])])
        with G_LOGGER.verbosity(G_LOGGER.ERROR):
            ok = bool(Comparator.compare_accuracy(results, compare_func=SimpleCompareFunc(atol=atol, rtol=rtol)))
    for key, ref in reference.items():
        got = candidate[key]
        if ref.dtype.kind == "f":
            diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
            lines.append(f"{key:<10} max abs {diff.max():.2e}  max rel {(diff / np.maximum(np.abs(ref), 1e-6)).max():.2e}")
        else:
            lines.append(f"{key:<10} differing {np.mean(got != ref):.2e}")
    return ok, lines


# ---- this machine (CPU) ---------------------------------------------------------------------------

def test_auto_picks_onnxruntime_here_and_names_the_gpu_backends(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible here: auto may pick a GPU backend")
    name, why = select_backend("auto", make_manifest(tmp_path / "eng"))
    assert name == "onnxruntime" and "\n" not in why
    assert "tensorrt: " in why and "torch-cuda: no CUDA GPU is visible to PyTorch" in why and "onnxruntime-cuda: " in why
    assert why.index("tensorrt") < why.index("torch-cuda") < why.index("onnxruntime-cuda")


@pytest.mark.parametrize("backend", ["tensorrt", "torch-cuda"])
def test_asking_for_a_gpu_backend_without_one_fails_in_one_line(tmp_path, backend):
    manifest = make_manifest(tmp_path / "eng")
    if unavailable_reason(backend, manifest) is None:
        pytest.skip(f"{backend} can run here")
    with pytest.raises(UserError) as info:
        select_backend(backend, manifest)
    assert f"backend {backend} is not available here: " in str(info.value) and "\n" not in str(info.value)


def test_onnxruntime_iobinding_backend_equals_the_numpy_one(engines, rng):
    from runtime.backends.onnxruntime_device_backend import OnnxRuntimeDeviceBackend

    manifest = load_manifest(engines)
    plain = create_backend("onnxruntime", manifest)
    bound = OnnxRuntimeDeviceBackend(manifest, ["CPUExecutionProvider"], device="cpu")
    frames = [rng.integers(0, 256, (2, *ENGINE_SIZE, 3), dtype=np.uint8) for _ in range(3)]
    a, b = plain.keyframe_step(frames[0]), bound.keyframe_step(frames[0])
    for f in frames[1:]:
        a, b = plain.propagation_step(a, f), bound.propagation_step(b, f)
    assert np.array_equal(bound.download(b.scores), a.scores)
    # like with like: both run labels.onnx (the plain backend's NumPy labels are held to the
    # graph by tests/runtime/test_labels.py, with their tie tolerance)
    assert np.array_equal(bound.labels(b, ENGINE_SIZE), plain.run("labels", a.scores))
    parts = bound.split_state(b, [1, 1])
    assert np.array_equal(bound.download(bound.concat_states(parts).scores), a.scores)


def test_tolerance_report_on_two_cpu_backends(engines, rng):
    manifest = load_manifest(engines)
    ort_backend, torch_backend = create_backend("onnxruntime", manifest), create_backend("torch", manifest)
    table = stage_table(manifest.model["num_classes"], manifest.model["radius"], ENGINE_SIZE)
    for stage in ("flow", "warp", "labels"):
        feeds = random_inputs(table[stage], 2, rng)
        out = table[stage].outputs[0].name
        ref = {out: ort_backend.run(stage, *feeds.values())}
        got = {out: torch_backend.run(stage, *(torch.from_numpy(v) for v in feeds.values())).numpy()}
        ok, lines = tolerance_report(ref, got, atol=1e-4, rtol=1e-3, names=("onnxruntime", "torch"))
        assert ok and len(lines) == 1, lines


# ---- torch-cuda (GPU) -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def torch_cuda(engines):
    manifest = load_manifest(engines)
    reason = unavailable_reason("torch-cuda", manifest)
    if reason is not None:
        pytest.skip(f"torch-cuda: {reason}")
    return create_backend("torch-cuda", manifest)


# Share of pixels whose torch-cuda label must equal the FP32 CPU torch backend's on the real clip, for
# the precision torch-cuda runs (gpu_checks.gpu_precision: FP16 on Turing and newer, FP32 on Pascal).
# FP32 on the GPU differs from the CPU only in summation order (~1e-6 relative), which flips a label
# only at near-exact ties; FP16 rounds every activation to ~1e-3 relative, so the labels of pixels whose
# two best scores are that close (many, with random weights) may flip, and the flips carry over frames.
FP32_AGREEMENT = 0.999
FP16_AGREEMENT = 0.995
TORCH_CUDA_AGREEMENT = {"fp32": FP32_AGREEMENT, "fp16": FP16_AGREEMENT}


@pytest.mark.gpu
def test_torch_cuda_fp16_or_fp32_labels_agree_with_torch_cpu_fp32_on_the_real_clip(torch_cuda, engines, real_clip):
    frames = clip_frames(real_clip, CLIP_FRAMES)
    reference = clip_labels(create_backend("torch", load_manifest(engines)), frames)
    got = clip_labels(torch_cuda, frames)
    agreement = float(np.mean(got == reference))
    need = TORCH_CUDA_AGREEMENT[torch_cuda.precision]
    print(f"torch-cuda {torch_cuda.precision.upper()} vs torch CPU FP32: {agreement:.4%} of pixels agree over "
          f"{len(frames)} frames, need {need:.1%} ({torch_cuda.describe()})")
    assert agreement >= need, f"{torch_cuda.precision}: {agreement:.4%} < {need:.1%}"


@pytest.mark.gpu
def test_torch_cuda_graph_replay_equals_eager(torch_cuda, real_clip):
    frames = clip_frames(real_clip, 3)
    start = torch_cuda.keyframe_step(frames[0])
    torch_cuda.use_graphs = False
    eager = torch_cuda.propagation_step(start, frames[1])
    eager_next = torch_cuda.propagation_step(eager, frames[2])
    torch_cuda.use_graphs = True
    graph = torch_cuda.propagation_step(start, frames[1])  # captured here, replayed
    graph_next = torch_cuda.propagation_step(graph, frames[2])
    assert torch.equal(graph.scores, eager.scores) and torch.equal(graph.small, eager.small)
    assert torch.equal(graph_next.scores, eager_next.scores)


@pytest.mark.gpu
def test_torch_cuda_interleaved_streams_equal_separate_runs(torch_cuda, real_clip):
    frames = clip_frames(real_clip, 4)
    alone = torch_cuda.keyframe_step(frames[0])
    for f in frames[1:]:
        alone = torch_cuda.propagation_step(alone, f)
    expected = alone.scores.clone()
    a, b = torch_cuda.keyframe_step(frames[0]), torch_cuda.keyframe_step(frames[3])
    for f in frames[1:]:
        a, b = torch_cuda.propagation_step(a, f), torch_cuda.propagation_step(b, f)
    assert torch.equal(a.scores, expected)


# ---- tensorrt (GPU + TensorRT) ------------------------------------------------------------------------

def _tensorrt_reason() -> str | None:
    try:
        import tensorrt  # noqa: F401
    except Exception as e:
        return f"TensorRT is not importable ({type(e).__name__})"
    from plugins import toolchain
    from plugins.launcher import gpu_unavailable_reason

    if (why := gpu_unavailable_reason()) is not None:
        return why
    return None if toolchain.available() else toolchain.missing_reason("compute_75", [])


@pytest.fixture(scope="module")
def trt_engines(engines, tmp_path_factory) -> Path:
    reason = _tensorrt_reason()
    if reason is not None:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("trt") / "eng"
    shutil.copytree(engines, out)
    proc = run_module("export.build_engines", "--random-weights", "--num-classes", "11", "--out", str(out),
                      "--size", f"{ENGINE_SIZE[0]}x{ENGINE_SIZE[1]}", "--backend", "tensorrt", "--seed", "3",
                      "--max-batch", "2", "--opt-level", "1", timeout=3000)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.gpu
def test_tensorrt_engines_hold_plugin_layers_for_warp_and_filter(trt_engines):
    engines = load_manifest(trt_engines).engines
    for stage, op in (("warp", "WarpByFlow"), ("filter", "ChunkFilter")):
        plugins = engines[stage]["plugins"]
        assert plugins and plugins["ids"] == [f"gsvnet::{op}"], (stage, plugins)
        assert plugins["engine_layers"], f"{stage}: the engine inspector lists no PLUGIN layer"
    assert all(engines[s]["plugins"] is None for s in engines if s not in ("warp", "filter"))


@pytest.mark.gpu
def test_tensorrt_matches_onnxruntime_per_output(trt_engines, rng):
    manifest = load_manifest(trt_engines)
    trt_backend, ort_backend = create_backend("tensorrt", manifest), create_backend("onnxruntime", manifest)
    fp16 = stage_table(manifest.model["num_classes"], manifest.model["radius"], ENGINE_SIZE, precision="fp16")
    report, failed = [], []
    for stage in ALL_STAGES:
        feeds = random_inputs(fp16[stage], 2, rng)
        out = fp16[stage].outputs[0].name
        ref = {out: ort_backend.run(stage, *(v.astype(np.float32) if v.dtype == np.float16 else v for v in feeds.values()))}
        got = {out: trt_backend.download(trt_backend.run(stage, *feeds.values()))}
        if ref[out].dtype == np.uint8:
            ok = float(np.mean(got[out] != ref[out])) <= 1e-2
            _, lines = tolerance_report(ref, got, 0, 0, ("onnxruntime", "tensorrt"))
        else:
            scale = float(np.abs(ref[out]).max())
            ok, lines = tolerance_report(ref, got, FP16_TOL * (1 + scale), FP16_TOL, ("onnxruntime", "tensorrt"))
        report += [f"{stage:<10} {line}  {'ok' if ok else 'FAILED'}" for line in lines]
        if not ok:
            failed.append(stage)
    print("\n".join(["tensorrt FP16 vs onnxruntime FP32:", *report]))
    assert not failed, report


@pytest.mark.gpu
def test_tensorrt_labels_match_onnxruntime_on_the_real_clip(trt_engines, real_clip):
    manifest = load_manifest(trt_engines)
    frames = clip_frames(real_clip, CLIP_FRAMES)
    agreement = float(np.mean(clip_labels(create_backend("tensorrt", manifest), frames)
                              == clip_labels(create_backend("onnxruntime", manifest), frames)))
    print(f"tensorrt vs onnxruntime: {agreement:.4%} of pixels agree")
    assert agreement >= 0.99, agreement


@pytest.mark.gpu
def test_tensorrt_graph_replay_equals_eager(trt_engines, real_clip):
    backend = create_backend("tensorrt", load_manifest(trt_engines))
    frames = clip_frames(real_clip, 3)
    start = backend.keyframe_step(frames[0])
    eager = backend.propagation_step(start, frames[1])  # eager, then captured for this direction
    eager_scores = backend.download(eager.scores)
    replay = backend.propagation_step(start, frames[1])  # replayed
    assert backend.graph_error is None, backend.graph_error
    assert np.array_equal(backend.download(replay.scores), eager_scores)


@pytest.mark.gpu
def test_tensorrt_refuses_engines_built_elsewhere(trt_engines, tmp_path):
    import json

    copy = tmp_path / "eng"
    shutil.copytree(trt_engines, copy)
    data = json.loads((copy / "manifest.json").read_text())
    data["engines"]["flow"]["tensorrt"] = "9.9.9"
    (copy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError) as info:
        create_backend("tensorrt", load_manifest(copy))
    assert "flow.engine" in str(info.value) and "--backend tensorrt" in str(info.value) and "\n" not in str(info.value)
