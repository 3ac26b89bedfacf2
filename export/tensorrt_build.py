"""FP16 TensorRT engines for every stage graph (``python -m export.build_engines --backend tensorrt``).

1. FP16 graphs: the model in half precision (normalisation constants, flow and sampling grids
   stay FP32, see ``GSVNet.half``) exported per stage to ``<stage>.fp16.onnx`` and checked in
   onnxruntime against the FP32 model (``export.verify``); listed under ``graphs_fp16``.
   Precision is a property of the graph: TensorRT builds a strongly typed network from it
   (TensorRT 11 has no FP16 builder flag); a TensorRT without strong typing gets the FP16 flag.
2. One engine per stage with Polygraphy's loaders: one optimisation profile (batch 1..max,
   optimised for 1), the builder optimisation level, a persistent timing cache, optionally
   version compatibility. Graphs with gsvnet:: nodes use our plugins (registered first); with
   TensorRT >= 10.9 their AOT implementation embeds our PTX in the engine.
3. The manifest's ``engines`` entry records what the engine is tied to (TensorRT version, GPU,
   compute capability, settings, ONNX and plugin hashes); an engine is rebuilt only when one of
   these changed (``engine_format.compat.engine_stale_reason``).

TensorRT, Polygraphy and torch are imported inside the functions that need them.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from .build_errors import TENSORRT_MISSING, BuildError, first_line
from .casts import uint8_casts_from_float
from .custom_ops import custom_op_transform
from .options import BuildOptions
from engine_format.compat import (ENGINE_STAGES, TensorRTEnvironment, engine_stale_reason, plugin_sources_sha256,
                            tensorrt_unsupported_reason)
from engine_format.manifest import Manifest, ManifestError, read_manifest, sha256_file

FP16_GRAPHS = "graphs_fp16"
PLUGIN_KERNELS = {"WarpByFlow": "warp_by_flow", "ChunkFilter": "chunk_filter"}  # op -> plugins.nvcc source


# ---- pure helpers (tested on the CPU) -----------------------------------------------------------

def profile_shapes(inputs: list[Mapping], max_batch: int) -> dict[str, dict[str, list[int]]]:
    """Optimisation profile of a graph's inputs: batch 1..max_batch, optimised for 1."""
    def at(spec: Mapping, batch: int) -> list[int]:
        return [batch if d == "N" else int(d) for d in spec["shape"]]

    return {s["name"]: {"min": at(s, 1), "opt": at(s, 1), "max": at(s, max_batch)} for s in inputs}


def builder_settings(options: BuildOptions, strongly_typed: bool, plugin_mode: str | None) -> dict:
    """Everything chosen at build time that changes the engine (part of the staleness check)."""
    return {"max_batch": int(options.max_batch), "opt_batch": 1, "opt_level": int(options.opt_level),
            "version_compatible": bool(options.version_compatible),
            "typing": "strongly-typed" if strongly_typed else "fp16-flag", "plugin_mode": plugin_mode}


def engine_request(graph: Mapping, env: TensorRTEnvironment, settings: Mapping, plugin_sha: str | None) -> dict:
    """What an engine built now from ``graph`` would be tied to (see ``engine_stale_reason``)."""
    return {"onnx_sha256": graph["sha256"], "environment": env.to_dict(), "settings": dict(settings),
            "plugin_sources_sha256": plugin_sha if graph.get("custom_op") else None}


def engine_entry(stage: str, file: str, sha256: str, graph: Mapping, request: Mapping, plugins: dict | None,
                 seconds: float) -> dict:
    """The manifest entry of a freshly built engine."""
    env = request["environment"]
    settings = request["settings"]
    return {
        "stage": stage, "file": file, "sha256": sha256,
        "tensorrt": env["tensorrt"], "gpu": env["gpu"], "compute_capability": env["compute_capability"],
        "precision": graph.get("precision", "fp16"), "typing": settings["typing"],
        "onnx": {"file": graph["file"], "sha256": graph["sha256"]},
        "inputs": list(graph["inputs"]), "outputs": list(graph["outputs"]),
        "profile": profile_shapes(graph["inputs"], settings["max_batch"]),
        "plugins": plugins, "plugin_sources_sha256": request["plugin_sources_sha256"],
        "settings": dict(settings), "build_seconds": round(seconds, 1),
    }


# ---- FP16 graphs --------------------------------------------------------------------------------

def _reusable(folder: Path, entry: Mapping | None, key: str) -> bool:
    if not entry or entry.get("build_key") != key:
        return False
    path = folder / entry["file"]
    return path.is_file() and sha256_file(path) == entry["sha256"]


def export_fp16_graphs(manifest: Manifest, model: Any, log: Callable[[str], None] = print,
                       previous: Manifest | None = None, stages: tuple[str, ...] = ENGINE_STAGES) -> dict[str, dict]:
    """Export and verify ``<stage>.fp16.onnx`` for ``stages`` into the manifest's folder.

    model: the FP32 GSVNet (the reference; an FP16 copy is exported). Reuses graphs of
    ``previous`` (the manifest on disk) built from the same weights/config/size/opset.
    Sets ``manifest.data["graphs_fp16"]``; raises BuildError naming the graphs that fail.
    """
    from .graphs import export_graphs

    folder, data = manifest.folder, manifest.data
    key = data["build_key"]
    old = (previous.data.get(FP16_GRAPHS, {}) if previous is not None else {})
    reuse = {name: old[name] for name in stages if _reusable(folder, old.get(name), key)}
    custom = custom_op_transform(data["custom_ops"], model.config.radius)

    def transform(proto, stage):  # the gsvnet nodes, and uint8 labels cast from float (TensorRT's rule)
        return uint8_casts_from_float(custom(proto, stage) if custom else proto)

    imported = bool(data["model"].get("keyframe_import"))  # the keyframe net is the user's ONNX model
    graphs, failures = export_graphs(
        model, manifest.frame_size, folder, precision="fp16", opset=data["opset"], custom_ops=data["custom_ops"],
        build_key=key, stages=tuple(s for s in stages if not (imported and s == "keyframe")), reuse=reuse,
        transform=transform, log=log)
    if failures:
        raise BuildError(f"FP16 graphs disagree with the FP32 model beyond tolerance for: {', '.join(failures)} "
                     "(see the lines above); no engine was built")
    if imported and "keyframe" in stages:
        graphs["keyframe"] = reuse["keyframe"] if "keyframe" in reuse else imported_fp16_keyframe(manifest, model, log)
    data[FP16_GRAPHS] = {stage: graphs[stage] for stage in stages}
    return data[FP16_GRAPHS]


def imported_fp16_keyframe(manifest: Manifest, model: Any, log: Callable[[str], None]) -> dict:
    """``keyframe.fp16.onnx`` of an imported folder: its FP32 keyframe graph (the user's model) with
    the scores cast to float16 (``keyframe_import.fp16_output_graph``), held in onnxruntime to the
    FP32 graph on the folder's real verification frames; its manifest entry."""
    import numpy as np
    import onnx

    from engine_format.sessions import make_session
    from engine_format.stages import stage_table

    from .keyframe_import import fp16_output_graph

    folder, fp32 = manifest.folder, manifest.graphs["keyframe"]
    path, tmp = folder / "keyframe.fp16.onnx", folder / ".keyframe.fp16.onnx.tmp"
    frames = _verification_frames(manifest)
    try:
        onnx.save_model(fp16_output_graph(onnx.load(str(manifest.file(fp32["file"])))), str(tmp))
        name = fp32["inputs"][0]["name"]
        want = make_session(manifest.file(fp32["file"])).run(None, {name: frames})[0].astype(np.float64)
        got = make_session(tmp).run(None, {name: frames})[0]
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    problem = (f"gives {got.dtype} scores, not float16" if got.dtype != np.float16
               else compare_with_reference("keyframe", got, want))  # the engines' own FP16 limit
    if problem is not None:
        tmp.unlink(missing_ok=True)
        raise BuildError(f"the imported keyframe graph with FP16 scores {problem}; no engine was built")
    diff = float(np.abs(got.astype(np.float64) - want).max())
    tmp.replace(path)
    log(f"  keyframe: {Path(fp32.get('imported', 'your model')).name} stays FP32 inside its engine (its scores leave "
        f"in FP16 for the FP16 propagation engines; max |err| {diff:.2e} on {len(frames)} real frames)")
    stage = stage_table(model.config.num_classes, model.config.radius, manifest.frame_size, "fp16")["keyframe"]
    return {"file": path.name, "sha256": sha256_file(path), "opset": fp32["opset"], "precision": "fp32-fp16-output",
            "inputs": [s.to_dict() for s in stage.inputs], "outputs": [s.to_dict() for s in stage.outputs],
            "custom_op": None, "imported": fp32.get("imported"),
            "verification": {"reference": fp32["file"], "frames": len(frames), "max_abs": diff, "ok": True},
            "build_key": manifest.data["build_key"]}


# ---- engines -------------------------------------------------------------------------------------

def _tensorrt() -> Any:
    try:
        import tensorrt as trt
    except Exception as e:  # ImportError, or the bindings wheel without its libraries (OSError)
        raise BuildError(f"{TENSORRT_MISSING} ({first_line(e)})") from None
    return trt


def _plugin_mode(trt: Any) -> str:
    """'aot' (PTX embedded in the engine, no Python at run time) where TensorRT has it, else 'jit'."""
    import tensorrt.plugin as trtp

    flags = trt.NetworkDefinitionCreationFlag
    return "aot" if hasattr(trtp, "aot_impl") and hasattr(flags, "PREFER_AOT_PYTHON_PLUGINS") else "jit"


def _parse(trt: Any, path: Path, strongly_typed: bool, plugin_mode: str | None) -> tuple:
    """(builder, network, parser) for the ONNX file. Polygraphy's NetworkFromOnnxPath where no
    plugin preference is needed; its loaders take no such flag, so that case does the same steps."""
    from polygraphy.backend.trt import NetworkFromOnnxPath
    from polygraphy.backend.trt.util import get_trt_logger

    flags = trt.NetworkDefinitionCreationFlag
    preference = None
    if plugin_mode is not None and hasattr(flags, "PREFER_AOT_PYTHON_PLUGINS"):
        preference = flags.PREFER_AOT_PYTHON_PLUGINS if plugin_mode == "aot" else flags.PREFER_JIT_PYTHON_PLUGINS
    if preference is None:
        return NetworkFromOnnxPath(str(path), strongly_typed=strongly_typed)()
    builder = trt.Builder(get_trt_logger())
    network = builder.create_network((1 << int(preference)) | ((1 << int(flags.STRONGLY_TYPED)) if strongly_typed else 0))
    parser = trt.OnnxParser(network, get_trt_logger())
    if not parser.parse_from_file(str(path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BuildError(f"TensorRT cannot parse {path}: {errors or 'unknown parser error'}")
    return builder, network, parser


def _plugin_layers(network: Any) -> list[str]:
    """Names of the plugin layers TensorRT's parser created (empty: the function bodies were inlined)."""
    return [layer.name for layer in (network.get_layer(i) for i in range(network.num_layers))
            if layer.type.name.startswith("PLUGIN")]


def plugin_layers_in_engine(info: str) -> list[str]:
    """Names of the plugin layers in an engine inspector's JSON (``get_engine_information`` of an
    engine built with ProfilingVerbosity.DETAILED: {"Layers": [{"Name", "LayerType", ...}]})."""
    import json

    layers = json.loads(info).get("Layers", []) if info else []
    return [str(layer.get("Name", "")) for layer in layers
            if isinstance(layer, dict) and "plugin" in str(layer.get("LayerType", "")).lower()]


def _engine_plugin_layers(trt: Any, blob: Any, version_compatible: bool = False) -> list[str]:
    """Plugin layers the built engine really holds, from TensorRT's engine inspector. A
    version-compatible plan carries its lean runtime (host code): TensorRT deserialises it only
    with ``IRuntime.engine_host_code_allowed`` set (we built it, so it is trusted)."""
    runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
    if version_compatible:
        runtime.engine_host_code_allowed = True
    engine = runtime.deserialize_cuda_engine(blob)
    if engine is None:
        return []
    return plugin_layers_in_engine(engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON))


def _write_atomic(path: Path, blob: Any) -> str:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(blob)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return sha256_file(path)


def _build_engine(trt: Any, folder: Path, stage: str, graph: Mapping, request: Mapping, timing_cache: Path,
                  check: Callable[[bytes], str | None] | None = None) -> dict:
    """Build the engine of ``stage``; ``check(blob)`` (None: agrees with the reference, else why
    not) runs before the file is written, so an engine that disagrees never replaces the listed one."""
    from polygraphy.backend.trt import CreateConfig, EngineBytesFromNetwork, Profile
    from polygraphy.exception import PolygraphyException
    from polygraphy.logger import G_LOGGER

    settings = request["settings"]
    started = time.perf_counter()
    try:
        with G_LOGGER.verbosity(G_LOGGER.ERROR):
            network = _parse(trt, folder / graph["file"], settings["typing"] == "strongly-typed", settings["plugin_mode"])
            plugin_layers = _plugin_layers(network[1])
            if graph.get("custom_op") and not plugin_layers:
                raise BuildError(f"TensorRT {trt.__version__} parsed {graph['file']} without a plugin layer for "
                                 f"gsvnet::{graph['custom_op']} (it inlined the node's standard-op body); re-export "
                                 "the graphs with this package (its nodes carry plugin_namespace), or use --custom-ops none")
            profile = Profile()
            for name, shapes in profile_shapes(graph["inputs"], settings["max_batch"]).items():
                profile.add(name, min=shapes["min"], opt=shapes["opt"], max=shapes["max"])
            config = CreateConfig(fp16=settings["typing"] == "fp16-flag", profiles=[profile],
                                  load_timing_cache=str(timing_cache), builder_optimization_level=settings["opt_level"],
                                  version_compatible=settings["version_compatible"] or None,
                                  profiling_verbosity=trt.ProfilingVerbosity.DETAILED)  # the inspector lists layer types
            blob = EngineBytesFromNetwork(network, config=config, save_timing_cache=str(timing_cache))()
    except PolygraphyException as e:
        raise BuildError(f"TensorRT could not build the '{stage}' engine: {first_line(str(e))}") from None
    plugins = None
    if plugin_layers:  # checked on the blob: a refused engine never replaces the file the manifest lists
        from plugins import tensorrt_plugins

        in_engine = _engine_plugin_layers(trt, blob, bool(settings["version_compatible"]))
        if not in_engine:
            raise BuildError(f"the TensorRT engine built from {graph['file']} holds no plugin layer (engine inspector); "
                             "report this with the build log, or use --custom-ops none")
        kernel = PLUGIN_KERNELS.get(graph.get("custom_op") or "", "")
        ptx = {}
        if settings["plugin_mode"] == "aot" and kernel:
            ptx[kernel] = hashlib.sha256(tensorrt_plugins.aot_ptx(kernel)).hexdigest()
        plugins = {"ids": [f"gsvnet::{graph.get('custom_op')}"], "layers": plugin_layers, "engine_layers": in_engine,
                   "mode": settings["plugin_mode"], "ptx_sha256": ptx}
    if check is not None and (why := check(blob)) is not None:
        raise EngineDisagrees(f"the '{stage}' engine {why}")
    path = folder / f"{stage}.engine"
    sha = _write_atomic(path, blob)
    return engine_entry(stage, path.name, sha, graph, request, plugins, time.perf_counter() - started)


# ---- every engine held to the FP32 graph on real intermediates before it is listed ----------------

#: the labels engine must give the FP32 graph's label on this share of pixels (others: export.verify's FP16 tolerance)
MIN_ENGINE_LABELS = 0.999


class EngineDisagrees(BuildError):
    """A built engine's output differs from the FP32 graph's on real inputs."""


def stage_intermediates(model: Any, frames: Any, size: tuple[int, int], keyframe_graph: Path | None = None) -> dict[str, tuple]:
    """Real inputs of every stage (float32 / uint8 numpy): the PyTorch FP32 reference on two real
    frames at the engine size, the first a keyframe, the second propagated from it; the keyframe's
    scores come from ``keyframe_graph`` in onnxruntime when the keyframe net is an imported model."""
    import torch

    from gsvnet.stages import stage_functions

    fns = stage_functions(size)
    with torch.inference_mode():
        image0, image1 = (torch.from_numpy(frames[k:k + 1]) for k in (0, 1))
        small0 = fns["downsample"](model, image0)
        if keyframe_graph is not None:
            from engine_format.sessions import make_session

            session = make_session(keyframe_graph)
            scores0 = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: frames[:1]})[0])
        else:
            scores0 = fns["keyframe"](model, image0)
        small1 = fns["downsample"](model, image1)
        flow = fns["flow"](model, small1, small0)
        warped = fns["warp"](model, scores0, flow)
        intra = fns["intra"](model, small1)
        weights = fns["guide"](model, intra, warped)
        scores1 = fns["filter"](model, warped, intra, weights)
    inputs = {"downsample": (image1,), "keyframe": (image0,), "flow": (small1, small0), "warp": (scores0, flow),
              "intra": (small1,), "guide": (intra, warped), "filter": (warped, intra, weights), "labels": (scores1,)}
    return {stage: tuple(t.numpy() for t in tensors) for stage, tensors in inputs.items()}


def compare_with_reference(stage: str, got: Any, want: Any) -> str | None:
    """None if an engine output agrees with the FP32 graph's, else one clause saying by how much."""
    import numpy as np

    from .verify import FP16_TOL

    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return f"gives shape {tuple(got.shape)}, the FP32 graph {tuple(want.shape)}"
    if want.dtype == np.uint8:
        agree = float(np.mean(got == want))
        if agree < MIN_ENGINE_LABELS:
            return (f"gives the FP32 graph's labels on only {100 * agree:.2f}% of the pixels of a real frame "
                    f"(needs {100 * MIN_ENGINE_LABELS:.1f}%)")
        return None
    diff = float(np.abs(got.astype(np.float64) - want.astype(np.float64)).max())
    limit = FP16_TOL * (1.0 + float(np.abs(want).max()))
    if not np.isfinite(diff) or diff > limit:
        return f"differs from the FP32 graph by {diff:.3g} on real inputs (limit {limit:.3g})"
    return None


def run_engine_bytes(trt: Any, blob: bytes, feeds: dict, version_compatible: bool = False) -> Any:
    """Run a serialised engine once on the GPU with Polygraphy's TrtRunner; its first output."""
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
    if version_compatible:
        runtime.engine_host_code_allowed = True
    with TrtRunner(EngineFromBytes(blob, runtime=runtime)) as runner:
        outputs = runner.infer(feed_dict=feeds)
    return next(iter(outputs.values()))


def engine_check(trt: Any, manifest: Manifest, stage: str, graph: Mapping, inputs: tuple,
                 run: Callable[..., Any] = run_engine_bytes) -> Callable[[bytes], str | None]:
    """check(blob) for ``_build_engine``: the engine on ``inputs`` (cast to the FP16 graph's input
    types) against the FP32 onnxruntime graph of the same stage on the same inputs."""
    import numpy as np

    from engine_format.sessions import make_session

    fp32 = manifest.graphs[stage]
    reference = make_session(manifest.file(fp32["file"])).run(None, dict(zip((s["name"] for s in fp32["inputs"]), inputs)))[0]
    feeds = {spec["name"]: np.ascontiguousarray(value.astype(spec["dtype"]))
             for spec, value in zip(graph["inputs"], inputs)}
    version_compatible = bool(manifest.data.get("tensorrt_settings", {}).get("version_compatible"))

    def check(blob: bytes) -> str | None:
        try:
            got = run(trt, blob, feeds, version_compatible)
        except Exception as e:
            return f"does not run on this GPU ({first_line(str(e))})"
        return compare_with_reference(stage, np.asarray(got).astype(reference.dtype) if reference.dtype != np.uint8
                                      else np.asarray(got), reference)
    return check


def export_plain_fp16_graph(manifest: Manifest, model: Any, stage: str, log: Callable[[str], None]) -> dict:
    """``<stage>.fp16.onnx`` again from the standard-op decomposition (no gsvnet node, no plugin)."""
    from .graphs import export_graphs

    graphs, failures = export_graphs(
        model, manifest.frame_size, manifest.folder, precision="fp16", opset=manifest.data["opset"], custom_ops="none",
        build_key=manifest.data["build_key"], stages=(stage,), reuse={},
        transform=lambda proto, _stage: uint8_casts_from_float(proto), log=log)
    if failures:
        raise BuildError(f"the standard-op FP16 '{stage}' graph disagrees with the FP32 model; no engine for it")
    return graphs[stage]


#: onnx-tensorrt imports a node as a plugin before a model-local function of the same name only
#: from TensorRT 10.7 (onnx/onnx-tensorrt#978); before, our nodes' standard-op bodies are inlined.
MIN_PLUGIN_TENSORRT = (10, 7)


def plugin_support_reason(version: str) -> str | None:
    """One line when TensorRT ``version`` cannot build our custom-op graphs with the plugins."""
    numbers = []
    for piece in str(version).split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        numbers.append(int(digits) if digits else 0)
    if tuple(numbers) >= MIN_PLUGIN_TENSORRT:
        return None
    return (f"TensorRT {version} imports the gsvnet nodes' standard-op functions instead of their plugins (TensorRT "
            f"before {MIN_PLUGIN_TENSORRT[0]}.{MIN_PLUGIN_TENSORRT[1]} tries a model-local function before a plugin, "
            "onnx/onnx-tensorrt#978): install TensorRT >= 10.7 (>= 10.9 for AOT plugins), or build plain graphs with "
            "--custom-ops none")


def register_plugins(trt: Any) -> tuple[str, str]:
    """Register the gsvnet plugins for a build: (plugin sources sha256, 'aot' or 'jit'); BuildError
    (one line) when TensorRT is older than 10.7, no CUDA compiler is installed or
    ``tensorrt.plugin`` rejects the registration."""
    from plugins import tensorrt_plugins, toolchain

    if (why := plugin_support_reason(trt.__version__)) is not None:
        raise BuildError(why)
    if not toolchain.available():
        raise BuildError(f"the gsvnet plugins' kernels need a CUDA compiler and none is installed: "
                         f"{toolchain.nvrtc.INSTALL_HINT} (or install the CUDA toolkit), or export plain graphs "
                         "with --custom-ops none")
    try:
        tensorrt_plugins.register()
    except Exception as e:  # ImportError (no tensorrt.plugin), ValueError (the plugin schema), ...
        raise BuildError(f"TensorRT {trt.__version__} did not accept the gsvnet plugins ({first_line(e)}); "
                         "use TensorRT >= 10.9, or export plain graphs with --custom-ops none") from None
    return plugin_sources_sha256(), _plugin_mode(trt)


def _previous(folder: Path) -> Manifest | None:
    try:
        return read_manifest(folder)
    except ManifestError:
        return None


def _verification_frames(manifest: Manifest) -> Any:
    """The real frames of the folder's verification set at the engine size (engine_format/verification_set.py)."""
    from engine_format.verification_set import engine_frames, read_verification_set

    entry = manifest.data["verification"]
    return engine_frames(read_verification_set(manifest.file(entry["file"]))["frames"], manifest.frame_size)


def build_tensorrt_engines(manifest: Manifest, model: Any, options: BuildOptions, log: Callable[[str], None],
                           run_engine: Callable[..., Any] = run_engine_bytes) -> None:
    """FP16 graphs + one engine per stage into ``manifest.folder``; fills ``graphs_fp16`` and
    ``engines`` and saves the manifest after every engine (an interrupted build keeps its work).

    Each new engine runs on the GPU on real intermediates (``stage_intermediates``) and is listed
    only if it agrees with the FP32 graph of its stage; a plugin stage that fails to build or
    disagrees is rebuilt from its standard-op decomposition (``plugins: null``, and
    ``plugin_fallback`` says why). ``run_engine(trt, blob, feeds, version_compatible)`` executes an
    engine (tests pass a stand-in); ``options``: the build's options (``max_batch`` within MAX_BATCH
    is checked when they are made)."""
    from engine_format.compat import current_environment

    trt = _tensorrt()
    try:
        env = current_environment()
    except Exception as e:
        raise BuildError(f"no usable CUDA GPU for TensorRT ({first_line(e)}); "
                     "build engines on the machine that will run them, or use --backend onnx") from None
    if tensorrt_unsupported_reason(env.compute_capability, env.gpu):
        raise BuildError(tensorrt_unsupported_reason(env.compute_capability, env.gpu))
    folder = manifest.folder
    previous = None if options.force else _previous(folder)
    export_fp16_graphs(manifest, model, log, previous)
    graphs = manifest.data[FP16_GRAPHS]

    plugin_sha, plugin_mode, refused = None, None, None
    if any(g.get("custom_op") for g in graphs.values()):
        try:
            plugin_sha, plugin_mode = register_plugins(trt)
        except BuildError as e:  # no compiler, TensorRT < 10.7, ...: the standard-op graphs still build
            refused = str(e)
            log(f"  the gsvnet plugins cannot be used ({refused}); building those stages from their standard-op "
                "decomposition")
    strongly_typed = hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    timing_cache = Path(options.timing_cache) if options.timing_cache else folder / "timing.cache"
    candidates = {**(previous.engines if previous is not None else {}), **manifest.engines}
    engines: dict[str, dict] = {}
    manifest.data["engines"] = engines
    reused, built = [], []
    log(f"TensorRT engines for {env.describe()} (max batch {options.max_batch}, opt level {options.opt_level}"
        f"{', version-compatible' if options.version_compatible else ''})")
    manifest.data["tensorrt_settings"] = {"version_compatible": bool(options.version_compatible)}
    imported = manifest.file(manifest.graphs["keyframe"]["file"]) if manifest.data["model"].get("keyframe_import") else None
    intermediates = stage_intermediates(model, _verification_frames(manifest), manifest.frame_size, imported)
    for stage in ENGINE_STAGES:
        graph = graphs[stage]
        fallback = None
        if refused is not None and graph.get("custom_op"):
            graph = graphs[stage] = export_plain_fp16_graph(manifest, model, stage, log)
            fallback = refused
        settings = builder_settings(options, strongly_typed, plugin_mode if graph.get("custom_op") else None)
        request = engine_request(graph, env, settings, plugin_sha)
        why = "--force" if options.force else engine_stale_reason(folder, candidates.get(stage), request)
        if why is None:
            engines[stage] = candidates[stage]
            reused.append(stage)
            continue
        log(f"  engine {stage:<10} building ({why})")
        check = engine_check(trt, manifest, stage, graph, intermediates[stage], run_engine)
        try:
            engines[stage] = _build_engine(trt, folder, stage, graph, request, timing_cache, check)
        except BuildError as e:
            if not graph.get("custom_op"):
                raise
            # a plugin that fails to build or disagrees: the stage from its standard-op decomposition
            log(f"  engine {stage:<10} with the gsvnet::{graph['custom_op']} plugin refused ({e}); rebuilding it "
                "from the standard-op decomposition")
            graph = graphs[stage] = export_plain_fp16_graph(manifest, model, stage, log)
            request = engine_request(graph, env, builder_settings(options, strongly_typed, None), None)
            check = engine_check(trt, manifest, stage, graph, intermediates[stage], run_engine)
            engines[stage] = _build_engine(trt, folder, stage, graph, request, timing_cache, check)
            fallback = str(e)
        if fallback is not None:
            engines[stage]["plugin_fallback"] = fallback
        log(f"  engine {stage:<10} agrees with the FP32 graph on real frames")
        built.append(stage)
        manifest.save()
    log(f"engines: built {', '.join(built) or 'none'}; reused {', '.join(reused) or 'none'} (unchanged graph, "
        f"TensorRT, GPU, settings and plugins); timing cache {timing_cache}")
