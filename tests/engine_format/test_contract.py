"""The engines folder's contract is importable without torch (an onnxruntime- or OpenVINO-only
deployment reads manifests, stage specs and verification sets without PyTorch), and the runtime
reaches it without importing the builder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _modules_after(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))\n"
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return set(proc.stdout.split())


def test_the_contract_imports_without_torch_or_the_exporter():
    loaded = _modules_after("import engine_format.manifest, engine_format.stages, engine_format.sizes, "
                            "engine_format.compat, engine_format.verification_set, engine_format.errors")
    assert "torch" not in loaded
    assert not {m for m in loaded if m == "export" or m.startswith("export.")}


def test_the_stage_specs_use_the_networks_shapes():
    from engine_format.stages import stage_table
    from gsvnet.shapes import num_weights

    table = stage_table(num_classes=11, radius=1, frame_size=(544, 960))
    assert table["guide"].outputs[0].shape == ("N", num_weights(1), 68, 120)
    assert table["labels"].outputs[0].shape == ("N", 544, 960)
