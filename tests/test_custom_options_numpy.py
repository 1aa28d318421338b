"""numpy scalars and arrays are option values for a layer of yours too, as for a built-in's
(outside test t44b N7): ``np.prod`` of a shape is an np.int64, and a custom layer's options
refused it ("int64 is not an option value"). Twin: a backward ignoring the option still fails."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli

X = np.random.default_rng(0).standard_normal((3, 4))


class _Scale:
    def __init__(self, right: bool = True):
        self.right = right

    def forward(self, x, size=1):
        return x * np.asarray(size)

    def backward(self, grad_output, x, size=1):
        return {"x": grad_output * (np.asarray(size) if self.right else 1.0)}


@pytest.mark.parametrize("size", [np.prod((3,)), np.float32(3.0), np.array([3.0, 1.0, 1.0, 2.0]),
                                  np.bool_(True), np.array(3)])  # fmt: skip
def test_numpy_options_are_taken_and_checked(size):
    assert gradcli.check(_Scale(), {"x": X}, options={"size": size}).passed
    if np.any(np.asarray(size) != 1):
        assert not gradcli.check(_Scale(right=False), {"x": X}, options={"size": size}).passed


def test_an_object_array_is_still_no_option_value():
    with pytest.raises(gradcli.SpecError, match="not an option value"):
        gradcli.check(_Scale(), {"x": X}, options={"size": np.array([object()])})
