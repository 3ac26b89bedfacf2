"""Bounded-number flag types shared by runtime.infer and runtime.fleet."""

from __future__ import annotations

import argparse

import pytest

from runtime.arguments import alpha_value, non_negative_float, non_negative_int, positive_float, positive_int


@pytest.mark.parametrize("parse,text,value", [(positive_int, "3", 3), (non_negative_int, "0", 0), (positive_float, "0.25", 0.25),
                                              (non_negative_float, "0", 0.0), (alpha_value, "1", 1.0), (alpha_value, "0", 0.0)])
def test_values_within_the_bounds_are_returned(parse, text, value):
    assert parse(text) == value and type(parse(text)) is type(value)


@pytest.mark.parametrize("parse,text,message", [
    (positive_int, "0", "must be >= 1, got 0"), (positive_int, "1.5", "expected a whole number >= 1, got '1.5'"),
    (non_negative_int, "-1", "must be >= 0, got -1"), (positive_float, "0", "must be > 0, got 0"),
    (positive_float, "x", "expected a number > 0, got 'x'"), (non_negative_float, "-0.5", "must be >= 0, got -0.5"),
    (alpha_value, "2", "must be in [0, 1], got 2"), (alpha_value, "-0.1", "must be in [0, 1], got -0.1"),
    (alpha_value, "nan", "must be in [0, 1], got nan"), (non_negative_float, "nan", "must be >= 0, got nan"),
])
def test_anything_else_is_one_line_naming_the_bound(parse, text, message):
    with pytest.raises(argparse.ArgumentTypeError) as info:
        parse(text)
    assert str(info.value) == message
