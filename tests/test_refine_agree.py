"""Two smaller steps that agree to their round-off confirm a value the default step missed by
crossing a kink (outside test t53b F2): a leaky relu 5.1e-4 from its kink, crossed by central4's
2h (h = 7.4e-4), read 0.000392 at the default step, then 0.0341827351165 and 0.0341827351190
at h/2 and h/4; the rate never held (the first change was the kink's), the next step's
round-off stopped the halvings, and the right backward failed 'does not match'. Only values
the same to the last bit confirmed so; a piece linear in the coordinate but summed in another
order by each copy differs in its last bits. The sequence is the tester's (their forward, their
data); the oracle is torch's autograd, 0.0341827352 (and central differences at h = 1e-7).
Twins: a wrong value beside the same readings, and readings still moving beyond their round-off,
confirm nothing."""

import numpy as np
import pytest

from gradcli.numeric.refine import decide

N0, N1, N2 = 0.0003922723971618858, 0.03418273511652348, 0.03418273511902189
NOISE = np.array([1.8168070855092688e-09])  # the reading's round-off at h / 4


def _tol(noise, values):  # central4's: atol 1e-9, rtol 1e-8, beside the round-off
    return 1e-9 + noise + 1e-8 * np.abs(values)


def _decide(a, n2=N2):
    ok, R, _, stop, _, _ = decide(np.array([a]), np.array([N0]), np.array([N1]), np.array([n2]),
                                  NOISE, 16.0, _tol, np.array([False]))  # fmt: skip
    return bool(ok[0]), float(R[0]), bool(stop[0])


def test_two_steps_agreeing_to_their_round_off_confirm_the_right_value():
    ok, R, stop = _decide(0.03418273512084231)
    assert ok and stop and abs(R - N2) < 1e-11


@pytest.mark.parametrize(("a", "n2"), [(0.03418273512084231 * 1.001, N2),
                                       (0.03418273512084231, N1 + 1e-7)],
                         ids=["wrong-value", "still-moving"])  # fmt: skip
def test_a_wrong_value_or_readings_still_moving_confirm_nothing(a, n2):
    ok, _, _ = _decide(a, n2)
    assert not ok
