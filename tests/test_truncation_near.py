"""Coordinates a large truncation brings near a wrong answer (outside test t37a F7).

A groupnorm at X = 1e4 + N(0, 1) under central4 in float32: the default step is 7 on a spread
of 1, the smaller steps confirm most of dX, and its largest element, 8.94, read 0.25 at the
default step; an answer of 0 there passed within its round-off, never refined. Where the
smaller steps confirmed others, those passing only under their round-off are refined too.
Twins: the right answer (float64 and float32) passes."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli

T = {"X": np.array([[9999.95703125, 9999.8359375, 10000.724609375, 10000.7978515625],
                    [9999.33203125, 9999.4501953125, 9999.4677734375, 9998.650390625]]),
     "gamma": np.array([2.45733642578125, 0.31868162751197815, -0.4563339054584503,
                        1.871634602546692]),
     "beta": np.array([-1.0472180843353271, 0.9684776067733765, -0.9551447629928589,
                       0.3541116714477539])}  # fmt: skip
G = np.array([[-1.968396782875061, 0.899273693561554, -0.15824761986732483, -0.9676814675331116],
              [1.6784189939498901, 0.7653546929359436, 0.04580783471465111,
               -0.7454434037208557]])  # fmt: skip
OPTIONS = {"spatial": 1, "groups": 2}


def _right() -> dict[str, np.ndarray]:
    r = gradcli.check("groupnorm", T, options=OPTIONS, grad_output=G, method="complex")
    assert r.passed, r.verdict()
    return {k: np.asarray(v) for k, v in r.computation.gradients.items()}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_largest_element_zeroed_fails_under_central4(dtype):
    right = _right()
    dX = right["X"].copy()
    dX[0, 1] = 0.0
    r = gradcli.check("groupnorm", T, options=OPTIONS, grad_output=G, grads={**right, "X": dX},
                      method="central4", dtype=dtype)  # fmt: skip
    assert not r.results["X"].passed and not r.results["X"].unresolved, r.verdict()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_twin_the_right_answer_passes(dtype):
    right = _right()
    if dtype == "float32":
        right = {k: v.astype(np.float32) for k, v in right.items()}
    r = gradcli.check("groupnorm", T, options=OPTIONS, grad_output=G, grads=right,
                      method="central4", dtype=dtype)  # fmt: skip
    assert r.passed, r.verdict()
