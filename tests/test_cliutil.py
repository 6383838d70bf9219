"""The shared option parsers of the CLI."""

from __future__ import annotations

import pytest

from taskloop.cliutil import parse_weights
from taskloop.errors import TaskloopError


class WeightError(TaskloopError):
    code = "test.weight"


def test_parse_weights_reads_name_value_pairs() -> None:
    assert parse_weights(["a=2", " b = 0.5", "c=0"], option="--w") == {"a": 2.0, "b": 0.5, "c": 0.0}
    assert parse_weights(["a"], option="--w", bare=1.0) == {"a": 1.0}
    assert parse_weights([], option="--w") == {}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["a"], "--w 'a': expected NAME=W"),
        (["=1"], "expected NAME=W"),
        (["a=x"], "'x' is not a number"),
        (["a=-1"], "W must be a finite number >= 0"),
        (["a=inf"], "W must be a finite number >= 0"),
        (["a=nan"], "W must be a finite number >= 0"),
        (["z=1"], "unknown name 'z'"),
        (["a=1", "a=2"], "'a' given twice"),
    ],
)
def test_parse_weights_refuses_with_the_option_named(values: list[str], message: str) -> None:
    with pytest.raises(WeightError, match=message) as info:
        parse_weights(values, option="--w", known=("a", "b"), error=WeightError)
    assert info.value.hint is not None and "names: a, b" in info.value.hint
