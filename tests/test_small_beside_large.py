"""Small elements beside large ones (outside test t35a): each case's right answer passes (or,
where the step truly cannot read an element, says 'cannot resolve'), and a slip on the small
element never passes.

- F3: a float32 spec's linear, dW[0, 1] of 7.5e-6 beside a column of 1.6e4, float32 answers:
  sign-flipped or doubled it passed (a float32 spec's reference was not 'float64 work').
- F4: a linear under forward differences, dW[0, 1] of 1e-4 read to 1.7e-4: zeroed it passed
  'within noise' (64 of forward's atol, 6.4e-4, was the bar for a round-off to count).
- F5: a log-sum-exp rounded at 17, its 4.1e-8 read to 0.1% at the default step and worse at
  smaller ones: sign-flipped or zeroed it passed under the atol.
- F6: a float32 bias before a batchnorm at x ~ 1e3: db, 0 in theory, 2.2e-4 of float32
  round-off, failed as 'wrong' (its float64 run read 2^-53, a float32 number).
- F7: a confident softmax's dx of 7.3e-9, 10% off, passed under the atol of 5.9e-9.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradcli

F32 = np.float32
X3 = np.array([[-6517.91162109375, -1.7471729734097607e-05, 1.6637239456176758,
                0.6591477394104004],
               [-16413.97265625, -5.203264095143822e-07, -0.6234637498855591,
                0.1486315280199051],
               [-16081.8779296875, 2.4177186787710525e-05, 0.23538091778755188,
                1.575626015663147]], dtype=F32)  # fmt: skip
W3 = np.array([[0.3166450262069702, 0.5105466842651367, -1.4931167364120483,
                2.2527291774749756],
               [-1.9156455993652344, 1.101801872253418, -0.32990407943725586,
                -0.8806465268135071]], dtype=F32)  # fmt: skip
G3 = np.array([[0.38018909096717834, -0.11005869507789612],
               [1.4825711250305176, -1.8296040296554565],
               [-0.0030809645541012287, -0.8920558094978333]], dtype=F32)  # fmt: skip


@pytest.mark.parametrize("factor", [1.0, -1.0, 2.0])
def test_float32_linear_small_dW_element(factor):
    answers = {"x": G3 @ W3, "W": (G3.T @ X3).copy(), "b": G3.sum(0)}
    answers["W"][0, 1] *= F32(factor)
    r = gradcli.check("linear", {"x": X3, "W": W3, "b": np.zeros(2, F32)}, grad_output=G3,
                      dtype="float32", grads=answers)
    if factor == 1.0:
        assert r.passed or r.results["W"].unresolved, r.results["W"]
    else:
        assert not r.passed


X4 = np.array([[12.301533574825742, 2.987455375084699e-05, -0.2741378553622176,
                -0.8905918387572742],
               [-4546.707851717226, -9.916465549964624e-05, 0.060143602597438485,
                1.3402152455545335],
               [-4922.0651855132965, -6.204748998199405e-05, 0.4898420501851982,
                0.35688700816006075]])  # fmt: skip
W4 = np.array([[0.10541424899789856, -0.9304680447082047, -0.02925182246327349,
                0.6953031944582878],
               [-1.344214547285082, -0.45761576104021817, -1.901222739800844,
                -1.289537739784976]])  # fmt: skip
G4 = np.array([[-1.2674464814437032, 0.2712643588217015],
               [0.15675108662422516, -0.18693094462995438],
               [-2.516759710820513, -0.5386928958466366]])  # fmt: skip


@pytest.mark.parametrize("method", ["forward", "backward", "central"])
def test_one_sided_differences_do_not_pass_a_zeroed_small_element(method):
    t = {"x": X4, "W": W4, "b": np.array([-1.8417350377917323, -0.23509113107468127])}
    right = {"x": G4 @ W4, "W": G4.T @ X4, "b": G4.sum(0)}
    zeroed = {**right, "W": right["W"].copy()}
    zeroed["W"][0, 1] = 0.0
    r = gradcli.check("linear", t, grad_output=G4, grads=zeroed, method=method)
    assert not r.passed
    ok = gradcli.check("linear", t, grad_output=G4, grads=right, method=method)
    assert ok.passed or ok.results["W"].unresolved


def _lse(sign: float):
    def forward(x):
        m = x.max(-1, keepdims=True)
        return (m + np.log(np.exp(x - m).sum(-1, keepdims=True)))[..., 0]

    def backward(grad_output, x):
        e = np.exp(x - x.max(-1, keepdims=True))
        dx = grad_output[..., None] * e / e.sum(-1, keepdims=True)
        dx[0, 1] *= sign
        return {"x": dx}

    return forward, backward


@pytest.mark.parametrize("sign", [1.0, -1.0, 0.0])
def test_log_sum_exp_rounded_at_17(sign):
    forward, backward = _lse(sign)
    x = np.array([[17.0, 0.0, 1.0, -1.0], [0.3, 0.1, 2.0, -2.0]])
    r = gradcli.check(forward=forward, backward=backward, tensors={"x": x},
                      grad_output=np.ones(2))
    assert r.passed == (sign == 1.0)


X6 = np.array([[1000.125732421875, 999.867919921875, 1000.6404418945312],
               [1000.1049194335938, 999.46435546875, 1000.361572265625],
               [1001.3040161132812, 1000.9470825195312, 999.2962646484375],
               [998.7345581054688, 999.376708984375, 1000.0413208007812]], dtype=F32)
G6 = np.array([[-0.7322673797607422, -0.5442590117454529, -0.3163001537322998],
               [0.4116305410861969, 1.042513370513916, -0.12853465974330902],
               [1.3664634227752686, -0.6651946902275085, 0.35151007771492004],
               [0.9034701585769653, 0.0940122976899147, -0.7434992790222168]], dtype=F32)


def _bias_bn(slip: float):
    def forward(x, b):
        z = x + b
        zc = z - z.mean(0)
        return zc / np.sqrt((zc * zc).mean(0) + 1e-5)

    def backward(grad_output, x, b):
        z = x + b
        zc = z - z.mean(0)
        r = 1 / np.sqrt((zc * zc).mean(0) + 1e-5)
        xh = zc * r
        g = grad_output
        dz = r * (g - g.mean(0) - xh * (g * xh).mean(0))
        return {"x": dz, "b": dz.sum(0) + slip}

    return forward, backward


@pytest.mark.parametrize("method", ["central", "complex"])
@pytest.mark.parametrize("slip", [0.0, 1e-2])
def test_float32_bias_before_a_batchnorm(method, slip):
    forward, backward = _bias_bn(slip)
    b = np.array([-2.32503080368042, -0.218791663646698, -1.2459110021591187], dtype=F32)
    r = gradcli.check(forward=forward, backward=backward, tensors={"x": X6, "b": b},
                      grad_output=G6, dtype="float32", method=method)
    assert r.passed == (slip == 0.0), r.results["b"]


X7 = np.array([[16.040918350219727, -2.5556650161743164, 0.4180988371372223,
                -0.5677695870399475, -0.4526492953300476],
               [13.784402847290039, -2.019986152648926, -0.2319323718547821,
                -0.8652130961418152, 3.3229994773864746],
               [14.225786209106445, -0.3526307940483093, -0.28128743171691895,
                -0.6680463552474976, -1.0551505088806152]])  # fmt: skip
G7 = np.array([[-0.39080098271369934, 0.4819453954696655, -0.23855361342430115,
                0.9577587246894836, -0.19980213046073914],
               [0.02425956539809704, 1.5458208322525024, 0.545105516910553,
                -0.5052287578582764, -0.18283897638320923],
               [0.5405251383781433, 1.935088038444519, -0.2696203291416168,
                -0.24355867505073547, 1.0023136138916016]])  # fmt: skip


@pytest.mark.parametrize("method", ["central", "central4"])
@pytest.mark.parametrize("factor", [1.0, 1.1])
def test_confident_softmax_small_element(method, factor):
    e = np.exp(X7 - X7.max(-1, keepdims=True))
    y = e / e.sum(-1, keepdims=True)
    dx = y * (G7 - (G7 * y).sum(-1, keepdims=True))
    dx[0, 1] *= factor
    r = gradcli.check("softmax", {"x": X7}, grad_output=G7, grads={"x": dx}, method=method)
    assert r.passed == (factor == 1.0)
