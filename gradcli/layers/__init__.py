"""The layer registry: explicit, ordered, read-only. Adding a layer is one file plus one line."""

from __future__ import annotations

from types import MappingProxyType

from gradcli.errors import GradcliError
from gradcli.layers import attention, conv1d, conv2d, linear, lstm_step, rnn_step
from gradcli.layers.base import Layer, TensorInfo

REGISTRY: MappingProxyType[str, Layer] = MappingProxyType(
    {
        "linear": linear.LAYER,
        "conv1d": conv1d.LAYER,
        "conv2d": conv2d.LAYER,
        "attention": attention.LAYER,
        "rnn_step": rnn_step.LAYER,
        "lstm_step": lstm_step.LAYER,
    }
)


def get_layer(name: str) -> Layer:
    """The registered layer called ``name``; an unknown name is an error listing the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(REGISTRY)
        raise GradcliError(f"unknown layer {name!r} (known layers: {known})") from None


__all__ = ["REGISTRY", "Layer", "TensorInfo", "get_layer"]
