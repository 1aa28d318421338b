"""CS231n's dropout_forward draws its own mask, so its output is compared with ours only where it
keeps an element (layers/dropout.py ``expected``). A mask that keeps none made that comparison
and the gradient check empty:

- seeded at each call (CS231n's ``np.random.seed(dropout_param['seed'])``), keeping none of 6
  elements at p = 0.9 where ours keeps one: PASS, with every gradient 0 whatever the backward;
  now refused, exit 2, as the built-in dropout keeping none is (checking/soundness.py);
- drawn anew at each call (no seed): two calls often agree where the mask drops nearly all
  (a third of the pairs on 6 elements at p = 0.9), and the check then differenced noise and
  blamed the backward (``dx is zero everywhere where the numerical gradient is not: a missing
  term or path``); now enough calls tell a mask drawn per call (userwork.forward_calls), and
  the verdict is the forward's non-determinism (checking/contract.py), with no hint on noise.

Oracles: numpy's own generator replayed (which seeds draw an all-zero first mask), and the
chance of two masks agreeing counted by hand. Twins: the same student file keeping some
elements passes, and its backward without the mask's scale still fails."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gradcli.checking.userwork import REDRAW_MISSED, forward_calls
from gradcli.inputs.spec import load_spec
from gradcli.layers.dropout import redraw_agrees

STUDENT = '''import numpy as np
def dropout_forward(x, dropout_param):
    p, mode = dropout_param["p"], dropout_param["mode"]
    SEED
    mask = (np.random.rand(*x.shape) < p) / p
    return (x * mask).astype(x.dtype, copy=False), (dropout_param, mask)
def dropout_backward(dout, cache):
    dropout_param, mask = cache
    return dout * mask SLIP
'''
SEEDED = 'np.random.seed(dropout_param["seed"])'


def _files(tmp_path: Path, p: float, seed: str, slip: str = "") -> tuple[Path, Path]:
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"layer: dropout\noptions: {{p: {p}}}\ntensors:\n  x: {{shape: [6]}}\n")
    mine = tmp_path / "layers.py"
    mine.write_text(STUDENT.replace("SEED", seed or "pass").replace(" SLIP", slip))
    return spec, mine


def test_a_seeded_mask_keeping_none_is_refused(
    tmp_path: Path, cli: Any, assert_usage_error: Any
) -> None:
    # the oracle: numpy's seed 0 keeps none of 6 at their p = 0.1, the built-in's seed 0 one
    np.random.seed(0)
    assert not np.any(np.random.rand(6) < 0.1)
    assert np.any(np.random.default_rng(0).random(6) >= 0.9)
    spec, mine = _files(tmp_path, 0.9, SEEDED)
    assert_usage_error(cli("check", "dropout", spec, "--impl", mine),
                       "the output of your dropout's forward is 0 at every element here and "
                       "around this point", "its own mask keeps no element")  # fmt: skip


@pytest.mark.parametrize(("slip", "code"), [("", 0), (" * dropout_param['p']", 1)])
def test_the_same_seeded_mask_keeping_some_is_checked(
    tmp_path: Path, cli: Any, slip: str, code: int
) -> None:
    """The twins: at p = 0.5 the student's seeded mask keeps some; a backward scaling by p
    twice over (p^0 where 1/p belongs, times p) fails."""
    spec, mine = _files(tmp_path, 0.5, SEEDED, slip)
    r = cli("check", "dropout", spec, "--impl", mine, "-f", "json")
    assert r.exit_code == code, (r.stdout, r.stderr)


def _all_zero_first(seed: int) -> bool:
    np.random.seed(seed)
    return not np.any(np.random.rand(6) < 0.1)


def test_a_mask_drawn_at_each_call_is_named_even_when_it_keeps_none(
    tmp_path: Path, cli: Any
) -> None:
    """Every run is the forward's non-determinism (exit 1), with no hint read from the noise,
    or, when every call it was asked for kept nothing, the refusal above (exit 2): never a
    verdict on the backward. Seeds of numpy's generator whose first mask keeps none (main's
    check read some of them as "the gradient does not match", with a hint on the noise)."""
    spec, mine = _files(tmp_path, 0.9, "")
    seeds = [s for s in range(40) if _all_zero_first(s)][:6]
    assert len(seeds) == 6
    for s in seeds:
        np.random.seed(s)  # the student's draws follow numpy's global generator
        r = cli("check", "dropout", spec, "--impl", mine, "-f", "json")
        assert r.exit_code in (1, 2), (s, r.stdout, r.stderr)
        if r.exit_code == 2:
            assert "its own mask keeps no element" in r.stderr
            continue
        doc = json.loads(r.stdout)
        det = [c for c in doc["contract"] if c["name"] == "determinism" and not c["passed"]]
        assert [c["tensor"] for c in det] == ["y"], (s, doc["contract"])
        hints = [h["text"] for h in doc["results"]["x"]["hints"]]  # none read from the noise
        assert all(h.startswith("cannot check dx: your forward is not deterministic")
                   for h in hints), hints
        assert doc["results"]["x"]["passed"] is False
        np.random.seed(s)  # the same draws: the same run, in text
        last = cli("check", "dropout", spec, "--impl", mine).stdout.splitlines()[-1]
        assert last.startswith("FAIL  dropout: your forward is not deterministic")


def test_enough_calls_tell_a_mask_drawn_per_call(tmp_path: Path) -> None:
    """The count: calls agreeing by chance (p^2 + (1 - p)^2 per nonzero element) fewer than
    once in REDRAW_MISSED, whichever p a student's code reads as keeping; one call where the
    layer is the built-in's (no mask of the user's)."""
    from gradcli.layers.dropout import Options
    from gradcli.user.impl import load_impl

    x = np.array([1.0, 2.0, 0.0, 4.0, 5.0, 6.0, 7.0])  # a zero is zero kept or not
    chance = (0.9**2 + 0.1**2) ** 6
    assert redraw_agrees({"x": x}, Options(p=0.9)) == pytest.approx(chance)
    assert redraw_agrees({"x": x}, Options(p=0.1)) == pytest.approx(chance)
    assert forward_calls(load_spec("dropout", None)) == 1
    spec, mine = _files(tmp_path, 0.9, "")
    x6 = np.asarray(load_spec("dropout", str(spec)).tensors["x"])
    chance = (0.9**2 + 0.1**2) ** int(np.count_nonzero(x6))
    calls = forward_calls(load_spec("dropout", str(spec), impl=load_impl(str(mine))))
    assert chance**calls <= REDRAW_MISSED < chance ** (calls - 1), calls
