"""An unknown layer or option names the one meant: a spelling, or CS231n's or torch's name for
it (outside test t20 F16: pad, pool_height, lstm got the list alone). Twin: a name close to
nothing gets no guess."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(("layer", "meant"), [("lstm", "lstm_step"), ("affine", "linear"),
                                              ("convv2d", "conv2d"), ("softmax_loss",
                                                                      "softmax_cross_entropy")])
def test_an_unknown_layer_names_the_one_meant(cli, layer, meant):
    r = cli("check", layer)
    assert r.exit_code == 2 and f"did you mean '{meant}'?" in r.stderr


@pytest.mark.parametrize(("layer", "option", "meant"), [("conv2d", "pad", "padding"),
                                                        ("maxpool2d", "pool_height", "size"),
                                                        ("conv2d", "strides", "stride")])
def test_an_unknown_option_names_the_one_meant(cli, write_spec, layer, option, meant):
    r = cli("check", layer, write_spec(f"layer: {layer}\noptions: {{{option}: 1}}\n"))
    assert r.exit_code == 2 and f"did you mean '{meant}'?" in r.stderr


def test_nothing_close_gets_no_guess(cli, write_spec):
    assert "did you mean" not in cli("check", "xyz").stderr
    r = cli("check", "conv2d", write_spec("layer: conv2d\noptions: {zzz: 1}\n"))
    assert r.exit_code == 2 and "did you mean" not in r.stderr
