"""Engine compatibility and staleness on real manifest entries (as the TensorRT builder writes
them), checked against other TensorRT versions, GPUs and plugin code. TensorRT-free."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine_format.compat import (ENGINE_STAGES, PLUGIN_SOURCES, PLUGINS_DIR, TensorRTEnvironment, check_engine,
                                  check_engines, engine_stale_reason, plugin_sources_sha256, tensorrt_version_mismatch)
from engine_format.manifest import ManifestError
from export.tensorrt_build import builder_settings, engine_request
from tests.export.helpers import HERE, build_args, make_manifest


def _one_line_naming(error: ManifestError, path: Path, folder: Path) -> str:
    message = str(error)
    assert "\n" not in message
    assert str(path) in message
    assert f"python -m export.build_engines --backend tensorrt --out {folder}" in message
    return message


def test_engines_built_here_pass(tmp_path):
    manifest = make_manifest(tmp_path / "eng")
    paths = check_engines(manifest, HERE, ENGINE_STAGES)
    assert paths["warp"] == tmp_path / "eng" / "warp.engine"
    entry = manifest.engines["filter"]
    assert entry["tensorrt"] == HERE.tensorrt and entry["gpu"] == HERE.gpu and entry["compute_capability"] == "9.0"
    assert entry["precision"] == "fp16" and entry["plugins"]["ids"] == ["gsvnet::ChunkFilter"]
    assert entry["profile"]["warped"] == {"min": [1, 11, 17, 30], "opt": [1, 11, 17, 30], "max": [4, 11, 17, 30]}
    assert manifest.engines["intra"]["plugins"] is None and manifest.engines["intra"]["plugin_sources_sha256"] is None


@pytest.mark.parametrize("env,needle", [
    (TensorRTEnvironment("10.14.1.48", HERE.gpu, "9.0"), "built for TensorRT 10.13.0.35, this machine has TensorRT 10.14.1.48"),
    (TensorRTEnvironment(HERE.tensorrt, "NVIDIA H200", "9.0"), "built on NVIDIA H100 80GB HBM3, this GPU is NVIDIA H200"),
    (TensorRTEnvironment(HERE.tensorrt, "NVIDIA A100-SXM4-80GB", "8.0"), "compute capability 9.0"),
])
def test_other_tensorrt_or_gpu_is_refused_in_one_line(tmp_path, env, needle):
    manifest = make_manifest(tmp_path / "eng")
    with pytest.raises(ManifestError) as info:
        check_engines(manifest, env, ENGINE_STAGES)
    assert needle in _one_line_naming(info.value, tmp_path / "eng" / "downsample.engine", tmp_path / "eng")


def test_version_compatible_engines_run_on_later_tensorrt_only(tmp_path):
    manifest = make_manifest(tmp_path / "eng", version_compatible=True)
    later = TensorRTEnvironment("10.14.1.48", HERE.gpu, HERE.compute_capability)
    assert check_engines(manifest, later, ENGINE_STAGES)
    earlier = TensorRTEnvironment("10.12.0.36", HERE.gpu, HERE.compute_capability)
    with pytest.raises(ManifestError, match="TensorRT 10.13.0.35 or later"):
        check_engines(manifest, earlier, ENGINE_STAGES)
    assert tensorrt_version_mismatch("10.13.0.35", "10.13.0.35", False) is False
    assert tensorrt_version_mismatch("10.9.0", "10.13.0", True) is False  # numeric, not string, order


def _plugin_copy(tmp_path: Path) -> Path:
    root = tmp_path / "plugins"
    for relative in PLUGIN_SOURCES:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PLUGINS_DIR / relative, root / relative)
    return root


def test_missing_plugin_code_is_refused_for_plugin_engines_only(tmp_path):
    root = _plugin_copy(tmp_path)
    manifest = make_manifest(tmp_path / "eng", plugin_root=root)
    (root / "chunk_filter" / "chunk_filter.cu").unlink()
    with pytest.raises(ManifestError) as info:
        check_engine(manifest, "filter", manifest.engines["filter"], HERE, root)
    message = _one_line_naming(info.value, tmp_path / "eng" / "filter.engine", tmp_path / "eng")
    assert "chunk_filter.cu is missing" in message
    assert check_engine(manifest, "intra", manifest.engines["intra"], HERE, root)  # no plugins inside


def test_changed_plugin_code_is_refused(tmp_path):
    root = _plugin_copy(tmp_path)
    manifest = make_manifest(tmp_path / "eng", plugin_root=root)
    with open(root / "warp_by_flow" / "warp_by_flow.cu", "a") as f:
        f.write("\n// edited\n")
    with pytest.raises(ManifestError) as info:
        check_engines(manifest, HERE, ENGINE_STAGES, root)
    assert "other gsvnet plugin code" in _one_line_naming(info.value, tmp_path / "eng" / "warp.engine", tmp_path / "eng")


def test_jit_plugin_engines_need_a_cuda_compiler(tmp_path):
    manifest = make_manifest(tmp_path / "eng", mode="jit")
    without = TensorRTEnvironment(HERE.tensorrt, HERE.gpu, HERE.compute_capability, compiler=False)
    with pytest.raises(ManifestError, match="no CUDA compiler is installed"):
        check_engine(manifest, "warp", manifest.engines["warp"], without)
    aot = make_manifest(tmp_path / "aot", mode="aot")
    assert check_engine(aot, "warp", aot.engines["warp"], without)  # AOT engines carry their PTX


def test_missing_or_corrupt_engine_file_and_missing_entry(tmp_path):
    manifest = make_manifest(tmp_path / "eng")
    (tmp_path / "eng" / "guide.engine").write_bytes(b"truncated")
    with pytest.raises(ManifestError, match="does not match the sha256"):
        check_engines(manifest, HERE, ENGINE_STAGES)
    (tmp_path / "eng" / "guide.engine").unlink()
    with pytest.raises(ManifestError, match="is missing"):
        check_engines(manifest, HERE, ENGINE_STAGES)
    del manifest.data["engines"]["labels"]
    with pytest.raises(ManifestError, match="no TensorRT engine for labels"):
        check_engines(manifest, HERE, ("labels",))


def test_stale_reasons(tmp_path):
    manifest = make_manifest(tmp_path / "eng")
    folder, entry = manifest.folder, manifest.engines["warp"]
    graph = manifest.data["graphs_fp16"]["warp"]
    settings = builder_settings(build_args(), True, "aot")
    sha = plugin_sources_sha256()
    same = engine_request(graph, HERE, settings, sha)
    assert engine_stale_reason(folder, entry, same) is None
    assert engine_stale_reason(folder, None, same) == "not built yet"
    assert engine_stale_reason(folder, entry, {**same, "onnx_sha256": "0" * 64}) == "FP16 ONNX graph changed"
    newer = engine_request(graph, TensorRTEnvironment("10.14.1.48", HERE.gpu, "9.0"), settings, sha)
    assert engine_stale_reason(folder, entry, newer) == "TensorRT 10.13.0.35 -> 10.14.1.48"
    other_gpu = engine_request(graph, TensorRTEnvironment(HERE.tensorrt, "NVIDIA L4", "8.9"), settings, sha)
    assert engine_stale_reason(folder, entry, other_gpu).startswith("GPU NVIDIA H100")
    bigger = engine_request(graph, HERE, builder_settings(build_args(max_batch=8), True, "aot"), sha)
    assert engine_stale_reason(folder, entry, bigger) == "settings changed: max_batch 4 -> 8"
    assert engine_stale_reason(folder, entry, engine_request(graph, HERE, settings, "f" * 64)) == "plugin code changed"
    (folder / "warp.engine").write_bytes(b"other")
    assert engine_stale_reason(folder, entry, same) == "engine file modified or corrupt"
