"""Engines folders as the TensorRT builder leaves them, for tests that need no GPU: FP16 graph
entries, engine files and engine entries made by the builder's own entry functions."""

from __future__ import annotations

from pathlib import Path

from engine_format.compat import ENGINE_STAGES, PLUGINS_DIR, TensorRTEnvironment, plugin_sources_sha256
from engine_format.manifest import FORMAT, VERSION, Manifest, sha256_file
from engine_format.stages import stage_table
from export import BuildOptions
from export.tensorrt_build import builder_settings, engine_entry, engine_request
from tests.conftest import ENGINE_SIZE

HERE = TensorRTEnvironment("10.13.0.35", "NVIDIA H100 80GB HBM3", "9.0", compiler=True)


def build_args(**overrides) -> BuildOptions:
    """The build's options with ``overrides`` (the rest at the command line's defaults)."""
    return BuildOptions(**overrides)


def _graph_entry(folder: Path, name: str, spec) -> dict:
    path = folder / f"{name}.fp16.onnx"
    path.write_bytes(f"fp16 graph of {name}".encode())
    return {"file": path.name, "sha256": sha256_file(path), "precision": "fp16", "custom_op": spec.custom_op,
            "inputs": [s.to_dict() for s in spec.inputs], "outputs": [s.to_dict() for s in spec.outputs]}


def make_manifest(folder: Path, env: TensorRTEnvironment = HERE, plugin_root: Path = PLUGINS_DIR, mode: str = "aot",
                  **settings) -> Manifest:
    """An engines folder as the builder leaves it: FP16 graph entries, engine files, engine entries."""
    folder.mkdir(parents=True, exist_ok=True)
    table = stage_table(11, 1, ENGINE_SIZE, precision="fp16")
    plugin_sha = plugin_sources_sha256(plugin_root)
    graphs, engines = {}, {}
    for name in ENGINE_STAGES:
        graphs[name] = graph = _graph_entry(folder, name, table[name])
        settings_now = builder_settings(build_args(**settings), True, mode if graph["custom_op"] else None)
        request = engine_request(graph, env, settings_now, plugin_sha)
        engine = folder / f"{name}.engine"
        engine.write_bytes(f"serialized plan of {name}".encode())
        plugins = {"ids": [f"gsvnet::{graph['custom_op']}"], "mode": mode, "ptx_sha256": {}} if graph["custom_op"] else None
        engines[name] = engine_entry(name, engine.name, sha256_file(engine), graph, request, plugins, 1.0)
    data = {"format": FORMAT, "version": VERSION, "model": {"num_classes": 11}, "frame_size": list(ENGINE_SIZE),
            "graphs": {}, "checkpoint": {}, "graphs_fp16": graphs, "engines": engines}
    manifest = Manifest(folder, data)
    manifest.save()
    return manifest
