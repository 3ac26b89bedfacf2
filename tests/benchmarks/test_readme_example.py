"""benchmarks.readme_example: the README's example and runtime.infer as whole processes, interleaved,
with the load average and the machine; --quick on a few frames of the real clip and small engines."""

from __future__ import annotations

import json

import pytest

from benchmarks import readme_example as bench
from tests.conftest import REPO


def test_the_example_is_taken_from_the_readme_and_only_its_paths_change(tmp_path):
    code = bench.readme_example((REPO / "README.md").read_text())
    changed = bench.with_paths(code, tmp_path / "v.mp4", tmp_path / "eng")
    assert f"VIDEO = {str(tmp_path / 'v.mp4')!r}" in changed and f"ENGINES = {str(tmp_path / 'eng')!r}" in changed
    differing = [(a, b) for a, b in zip(code.splitlines(), changed.splitlines()) if a != b]
    assert [a.split(" = ")[0] for a, _ in differing] == ["VIDEO", "ENGINES"]
    with pytest.raises(ValueError, match="VIDEO"):
        bench.with_paths(code.replace('VIDEO = "', 'VIDEO="'), tmp_path, tmp_path)
    with pytest.raises(ValueError, match="no '## Use from Python'"):
        bench.readme_example("# a README without the section\n")


def test_summary_is_the_median_of_each_and_their_ratio():
    def run(which: str, wall: float, load: float) -> dict:
        return {"which": which, "wall_seconds": wall, "load_before": [load, 0, 0], "load_after": [load + 1, 0, 0],
                "others_cpu_share": 0.01 if which == "example" else 0.2}

    runs = [run("example", 10.0, 1.0), run("infer", 9.0, 1.5), run("example", 12.0, 2.0), run("infer", 11.0, 0.5),
            run("example", 11.0, 1.0), run("infer", 10.0, 1.0)]
    summary = bench.summarise(runs)
    assert summary["median_wall_seconds"] == {"example": 11.0, "infer": 10.0}
    assert summary["example_over_infer"] == 1.1 and summary["within_5_percent"] is False
    assert summary["load_average_1min"] == {"min": 0.5, "max": 3.0}
    assert summary["others_cpu_share"] == {"max": 0.2, "runs_over_5_percent": 3, "runs": 6}


def test_fewer_than_three_rounds_are_refused():
    with pytest.raises(ValueError, match="at least|>= 3"):
        bench.ReadmeExampleOptions(rounds=2)
    assert bench.main(["--rounds", "2", "--quick"]) == 2


def test_quick_run_interleaves_both_processes_and_records_the_machine(engines, real_clip, tmp_path):
    out = tmp_path / "results"
    assert bench.main([str(real_clip), "--quick", "--engines", str(engines), "--out-dir", str(out)]) == 0
    (path,) = out.iterdir()
    assert path.name.endswith("-quick.json") and "-readme-example-" in path.name
    result = json.loads(path.read_text())
    assert result["quick"] is True and result["frames"] == bench.QUICK_FRAMES and result["rounds"] == 3
    assert [(r["which"], r["round"]) for r in result["runs"]] == [(w, k) for k in (1, 2, 3) for w in ("example", "infer")]
    for r in result["runs"]:
        assert r["wall_seconds"] > 0 and len(r["load_before"]) == len(r["load_after"]) == 3
        assert 0.0 <= r["others_cpu_share"] <= 1.0
    assert result["agreement"] == {"frames_printed": bench.QUICK_FRAMES, "frames_written": bench.QUICK_FRAMES,
                                   "same_road_shares": True}
    med = result["median_wall_seconds"]
    assert result["example_over_infer"] == pytest.approx(med["example"] / med["infer"], abs=1e-4)
    env = result["environment"]
    assert env["cpu"] and env["cores"] >= 1 and isinstance(env["cpu_flags"], list)
    assert env["command"].startswith("python -m benchmarks.readme_example ") and "--quick" in env["command"]
    assert result["engines"]["path"] == str(engines) and result["example"].startswith("from runtime import Segmenter")
