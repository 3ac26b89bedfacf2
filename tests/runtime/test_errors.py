"""first_line: how every layer puts an exception into a one-line message."""

from __future__ import annotations

import export.build_errors
import runtime.errors
from runtime.errors import first_line


def test_an_exception_is_its_type_and_the_first_line_of_its_text():
    assert first_line(ValueError("bad frame size\nTraceback (most recent call last): ...")) == "ValueError: bad frame size"
    assert first_line(RuntimeError("\n   starts after a blank line  \nsecond")) == "RuntimeError: starts after a blank line"
    assert first_line(OSError()) == "OSError"  # no text: the type alone


def test_text_is_its_first_line_and_limit_cuts_that_line():
    assert first_line("cannot parse\ndetails") == "cannot parse" and first_line("  \n") == ""
    assert first_line(ValueError("x" * 300), 200) == "ValueError: " + "x" * 200
    assert first_line("y" * 300, 10) == "y" * 10


def test_one_definition_for_runtime_and_export():
    assert runtime.errors.first_line is export.build_errors.first_line
