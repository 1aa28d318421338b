"""The layer registry: explicit, ordered, read-only. Adding a layer is one file plus one line.

A line names the layer and where it lives: ``"relu": "activations:RELU"`` is the attribute
RELU of gradcli/layers/activations.py; ``"linear": "linear"`` is that module's LAYER. A layer's
module is imported the first time the layer is asked for, so a command pays only for the
layers it runs, however many the registry lists.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

from gradcli.errors import GradcliError
from gradcli.layers.base import Layer, TensorInfo

_ENTRIES: dict[str, str] = {
    "linear": "linear",
    "conv1d": "conv1d",
    "conv2d": "conv2d",
    "attention": "attention",
    "rnn_step": "rnn_step",
    "lstm_step": "lstm_step",
    "layernorm": "layernorm",
    "batchnorm": "batchnorm",
    "groupnorm": "groupnorm",
    "maxpool2d": "maxpool2d",
    "avgpool2d": "avgpool2d",
    "relu": "activations:RELU",
    "leaky_relu": "activations:LEAKY_RELU",
    "sigmoid": "activations:SIGMOID",
    "tanh": "activations:TANH",
    "gelu": "activations:GELU",
    "softmax": "softmax",
    "flatten": "flatten",
    "dropout": "dropout",
    "embedding": "embedding",
    "mse": "losses:MSE",
    "softmax_cross_entropy": "losses:SOFTMAX_CROSS_ENTROPY",
    "svm": "losses:SVM",
}


class _Registry(Mapping[str, Layer]):
    """Read-only and ordered; ``name in REGISTRY`` and iteration import nothing."""

    def __getitem__(self, name: str) -> Layer:
        where = _ENTRIES[name]  # KeyError for an unknown name, as a dict
        module, _, attr = where.partition(":")
        return getattr(importlib.import_module(f"gradcli.layers.{module}"), attr or "LAYER")

    def __contains__(self, name: object) -> bool:
        return name in _ENTRIES

    def __iter__(self) -> Iterator[str]:
        return iter(_ENTRIES)

    def __len__(self) -> int:
        return len(_ENTRIES)

    def __repr__(self) -> str:
        return f"REGISTRY({', '.join(_ENTRIES)})"


REGISTRY: Mapping[str, Layer] = _Registry()


def get_layer(name: str) -> Layer:
    """The registered layer called ``name``; an unknown name is an error listing the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        from gradcli.layers.base import did_you_mean

        known = ", ".join(REGISTRY)
        near = did_you_mean(str(name), list(REGISTRY), LAYER_ALIASES)
        raise GradcliError(f"unknown layer {name!r}{near} (known layers: {known})") from None


# CS231n's and torch's names for gradcli's layers, read as a "did you mean"
LAYER_ALIASES = {"lstm": "lstm_step", "rnn": "rnn_step", "affine": "linear", "fc": "linear",
                 "conv": "conv2d", "spatial_batchnorm": "batchnorm", "bn": "batchnorm",
                 "spatial_groupnorm": "groupnorm", "max_pool": "maxpool2d",
                 "softmax_loss": "softmax_cross_entropy", "cross_entropy": "softmax_cross_entropy",
                 "svm_loss": "svm", "word_embedding": "embedding", "sdpa": "attention",
                 "temporal_affine": "linear"}  # fmt: skip


__all__ = ["REGISTRY", "Layer", "TensorInfo", "get_layer"]
