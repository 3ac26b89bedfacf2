"""``training.propagation --videos`` takes paths and glob patterns (quoted, so the shell leaves them)."""

from __future__ import annotations

import pytest

from training.propagation import expand_videos


def test_globs_expand_sorted_each_file_once_and_a_pattern_matching_nothing_is_named(tmp_path):
    for name in ("b.mp4", "a.mp4", "sub/c.mp4", "notes.txt"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    got = expand_videos([str(tmp_path / "*.mp4"), str(tmp_path / "a.mp4"), str(tmp_path / "**" / "c.mp4")])
    assert got == [str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4"), str(tmp_path / "sub" / "c.mp4")]
    with pytest.raises(FileNotFoundError, match=r"--videos .*\*\.mkv: no such video file"):
        expand_videos([str(tmp_path / "*.mkv")])
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        expand_videos([str(tmp_path / "missing.mp4")])
