"""Fake per-graph timings for the CPU choice (runtime/tuning.py ``choose_cpu``), so a test
decides which engine and precision are fastest instead of the machine."""

from __future__ import annotations

import pytest


def fake_cpu_timings(monkeypatch: pytest.MonkeyPatch, ms: dict[str, float]) -> list[str]:
    """Every graph of candidate ``"engine precision"`` takes ``ms[engine precision stage]``, else
    ``ms[engine precision]`` (or ``ms[engine]``) at every thread count; returns the list each
    measurement is appended to."""
    from runtime import tuning

    measured: list[str] = []

    def measure(manifest, stage, threads, runs=tuning.RUNS, seed=0, engine="onnxruntime", precision="f32"):
        measured.append(f"{engine} {precision} {stage} {threads}")
        return ms.get(f"{engine} {precision} {stage}", ms.get(f"{engine} {precision}", ms.get(engine)))

    monkeypatch.setattr(tuning, "measure_stage", measure)
    return measured
