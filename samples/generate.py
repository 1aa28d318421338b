"""Regenerate the example tensors in samples/ (seeded, so the files never change).

    python samples/generate.py
"""

from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
rng = np.random.default_rng(2025)


def save(rel: str, a: np.ndarray) -> None:
    path = HERE / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, a)


save("linear/x.npy", rng.standard_normal(5))
save("linear/W.npy", rng.standard_normal((3, 5)) * 0.5)
save("conv1d/x.npy", rng.standard_normal(12))
save("conv2d/X.npy", rng.standard_normal((6, 6, 2)))
np.savez(
    HERE / "attention" / "tensors.npz",
    X=rng.standard_normal((5, 8)),
    W_Q=rng.standard_normal((8, 4)) * 0.5,
    W_K=rng.standard_normal((8, 4)) * 0.5,
    W_V=rng.standard_normal((8, 3)) * 0.5,
)
