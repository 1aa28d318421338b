"""The Python API: what the CLI does, as functions returning data.

    report = gradcli.check("conv2d", {"X": X, "W": W, "b": b}, options={"stride": 2})
    report.passed, report.results["W"].max_abs_error, report.to_json(), str(report)

It never prints (the user's own code prints to stderr while it runs, as in the CLI), never
ends the process and reads no file unless asked (``check_spec``). Every keyword is checked
before anything runs; bad input raises :class:`gradcli.errors.GradcliError` (or a subclass)
naming the parameter (``err.param``). A mismatch is a result: ``report.passed`` is False, as
the CLI's exit code is 1.
"""

from __future__ import annotations

from gradcli.api.layer import assert_gradients, check, check_spec, compute
from gradcli.api.network import check_network, compute_network
from gradcli.api.reports import NetworkReport, Report
from gradcli.checking.compare import TensorResult
from gradcli.checking.compute import Computation
from gradcli.errors import GradcliError

__all__ = [
    "Computation", "NetworkReport", "Report", "TensorResult", "assert_gradients", "check",
    "check_network", "check_spec", "compute", "compute_network",
]  # fmt: skip

__all__ += ["GradcliError"]
