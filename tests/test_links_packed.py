"""links.packed() first-fits links into sets of disjoint outputs with a table of booleans: the
same sets as the plain first fit with Python sets (its oracle here), which took 53 s of a 29 s
check of a 64x32x128 relu MLP (outside test t71a F6). Twins: a link reaching no output, and a
table too large, which falls back to the sets."""

import numpy as np
import pytest

from gradcli.numeric import links


def _first_fit(reach):
    sets, used = [], []
    for k, r in enumerate(reach):
        for s, taken in enumerate(used):
            if not taken & set(r.tolist()):
                sets[s].append(k)
                taken |= set(r.tolist())
                break
        else:
            sets.append([k])
            used.append(set(r.tolist()))
    return sets


@pytest.mark.parametrize("seed", range(4))
def test_the_table_packs_as_first_fit_does(seed, monkeypatch):
    rng = np.random.default_rng(seed)
    reach = [np.unique(rng.integers(0, 50, rng.integers(0, 12))) for _ in range(300)]
    want = _first_fit(reach)
    got = links.packed(reach, False)
    assert [s.tolist() for s in got] == want
    for s in got:  # disjoint outputs within a set
        outs = np.concatenate([reach[k] for k in s])
        assert outs.size == np.unique(outs).size
    monkeypatch.setattr(links, "PACK_CELLS", 10)
    assert [s.tolist() for s in links.packed(reach, False)] == want


def test_a_loss_takes_one_link_a_set():
    assert [s.tolist() for s in links.packed([np.array([0]), np.array([0])], True)] == [[0], [1]]
