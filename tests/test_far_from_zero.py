"""Layers far from 0: a float32 softmax at x = 1e6 + N(0, 1), a saturated attention at
X = 1e4 + 0.01 N(0, 1) (outside test t35b F5, F8).

The float32 round-off another code may make was measured at inputs moved by a float32 last bit
against float64 at the spec's point: at 1e6 a last bit is 0.0625, which moves the softmax by
6%, and a negated float32 answer passed as 'round-off'. Now each moved run is held against
float64 at its own point. And the default step crossing a switch of the saturated weights
read 2.33, then 0.015 at half of it: a modelled round-off stopped the halvings there, one short
of reading the slope, 0. Twins: the right answers pass, wrong ones fail."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli


def _softmax_case(offset: float, seed: int):
    rng = np.random.default_rng(seed)
    x = (offset + rng.standard_normal((2, 5))).astype(np.float32)
    g = rng.standard_normal((2, 5)).astype(np.float32)
    x64 = x.astype(np.float64)
    y = np.exp(x64 - x64.max(axis=1, keepdims=True))
    y /= y.sum(axis=1, keepdims=True)
    return x, g, y * (g - (g * y).sum(axis=1, keepdims=True))


@pytest.mark.parametrize("offset", [1e4, 1e5, 1e6])
@pytest.mark.parametrize("factor", [1.0, 1.01, -1.0, 2.0])
def test_float32_softmax_answers_far_from_zero(offset, factor):
    x, g, truth = _softmax_case(offset, 3)
    r = gradcli.check("softmax", {"x": x}, grad_output=g, dtype="float32",
                      grads={"x": (factor * truth).astype(np.float32)})
    assert r.passed == (factor == 1.0), r.results["x"]


# the outside test's point: X = 1e4 + 0.01 N(0, 1), a saturated softmax
X = [[10000.000621285659, 10000.009835210036, 10000.00893594284, 9999.997128855804],
     [10000.003829365814, 9999.98183692397, 10000.01096862392, 10000.001689708224],
     [10000.010682864035, 10000.01045768034, 9999.996956544714, 9999.998335658784]]
W_Q = [[-0.8917707127170484, -2.0833543861034], [-0.14897192308259663, 0.13664513578363807],
       [-1.1028067827601193, 0.6948064276672696], [0.08146980625651742, 0.43661718575424435]]
W_K = [[-0.7866363456082952, -1.7815136455477132], [0.7609203505444048, 0.594005219049885],
       [-0.126806956633467, -0.43810644531985704], [-0.2940190916131104, -0.15393824210675439]]
W_V = [[-0.525822949366172, -2.027963030255994], [0.7672681884231806, -1.511756711303726],
       [-0.34980647912782614, -0.32361113732897717], [0.24438486174758725, -1.6300730032774473]]
G = [[1.190809085504232, 0.6398502055341888], [0.7547039080463267, 1.2526731473541355],
     [-0.8122609013482742, -3.148609230721722]]


def test_saturated_attention_far_from_zero():
    t = {"X": np.array(X), "W_Q": np.array(W_Q), "W_K": np.array(W_K), "W_V": np.array(W_V)}
    g = np.array(G)
    r = gradcli.check("attention", t, grad_output=g)
    assert r.passed, {n: x.worst[:1] for n, x in r.results.items() if not x.passed}
    right = r.computation.gradients
    wrong = {**right, "W_V": right["W_V"] * 1.01}
    assert not gradcli.check("attention", t, grad_output=g, grads=wrong).passed


# X = 100 + 0.01 N(0, 1): dW_Q of 0.3 summed from terms of 1e4 (outside test t35b F7)
X100 = [[100.0132257270092, 100.00578187942571, 99.97977689899619, 100.00784341414604],
        [100.01553016362139, 99.99209476288385, 100.0098525221289, 99.98201618268298],
        [100.00252156611646, 99.98338610638314, 100.00482390989649, 99.98212037249917]]
WQ100 = [[-2.6328702074086703, 0.3960931685849598], [2.287889768374534, -0.5956695756416828],
         [0.830165546635623, 0.11071109639467032], [-0.32350473962469367, 0.6153842851040173]]
WK100 = [[1.6424053792567757, -1.2351279871889438], [0.5638969440170685, 0.3451354299335683],
         [-1.4243456706601318, 1.6147108672323978], [1.9493587108638235, -0.952771988683857]]
WV100 = [[1.737900495331739, 0.056146118138976554], [-0.1632483388444223, 1.5034489452647608],
         [0.22743285521144363, 0.3231759063686238], [1.5176749746362916, 1.2882199194979769]]
G100 = [[0.893149417916258, -1.400549883940593], [-1.5723903412447418, 1.1261412366905617],
        [-0.9267195256430032, 0.14848354558181387]]


def test_attention_at_100_under_central4_keeps_its_contract():
    t = {"X": np.array(X100), "W_Q": np.array(WQ100), "W_K": np.array(WK100),
         "W_V": np.array(WV100)}
    r = gradcli.check("attention", t, grad_output=np.array(G100), method="central4")
    assert r.passed, r.verdict()
    # the twin: a backward squaring part of its upstream gradient is still not linear
    from gradcli.layers import REGISTRY

    ours = REGISTRY["attention"]

    def forward(X, W_Q, W_K, W_V):
        return ours.forward({"X": X, "W_Q": W_Q, "W_K": W_K, "W_V": W_V})[0]

    def backward(grad_output, X, W_Q, W_K, W_V):
        out = ours.backward(grad_output + 1e-3 * grad_output**2,
                            ours.forward({"X": X, "W_Q": W_Q, "W_K": W_K, "W_V": W_V})[1])
        return {k: out[k] for k in ("X", "W_Q", "W_K", "W_V")}

    bad = gradcli.check("attention", t, grad_output=np.array(G100), method="central4",
                        forward=forward, backward=backward)
    assert not bad.passed
    assert any(f.name == "linearity" and not f.passed for f in bad.check.contract)


def test_attention_at_100_under_the_complex_step():
    """The incremental path's softmax sums, cached, less the entry moved, cancel terms whose
    imaginary parts the complex step leaves tiny: dX of 201.81 read 201.809999 (outside test
    t36a F1). It is verified at the complex step's own step now, and set aside there."""
    t = {"X": np.array([[100.346], [100.822]]), "W_Q": np.array([[100.33]]),
         "W_K": np.array([[98.697]]), "W_V": np.array([[100.905]])}
    r = gradcli.check("attention", t, grad_output=np.ones((2, 1)), method="complex")
    assert r.passed, r.verdict()
    wrong = {**r.computation.gradients}
    wrong["X"] = wrong["X"] * (1 + 1e-6)
    assert not gradcli.check("attention", t, grad_output=np.ones((2, 1)), method="complex",
                             grads=wrong).passed
