"""A corpus of classic backward bugs, written as students and engineers write them, to measure
gradcli's diagnosis on code it was not designed around (issue 16).

Each bug is a user layer (``forward``/``backward`` as ``--impl`` and ``gradcli.check`` accept),
its tensors and options, the tensors whose gradients it gets wrong, and the expected cause: a
prefix of the ``cause`` a verified hint should name, or None for a bug outside the hypotheses
(then no hint may name any cause). ``python benchmarks/diagnosis.py`` prints the measurement.
"""

from __future__ import annotations

from bugcorpus.corpus import BUGS, TWINS, Bug

__all__ = ["BUGS", "TWINS", "Bug"]
