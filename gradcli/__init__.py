"""gradcli: compute and check the gradients of neural-network layers.

The Python API (gradcli.api), imported on first use so that ``import gradcli`` and the CLI's
``--help`` stay cheap::

    report = gradcli.check("conv2d", {"X": X, "W": W, "b": b}, options={"stride": 2})
"""

# no `from __future__ import annotations`: a signal during gradcli's first import (before the
# CLI's handler is in place) must meet as little as possible; __future__ is a module to load
TYPE_CHECKING = False  # not typing's: `import gradcli` stays cheap

__version__ = "0.1.0"

_API = (
    "check", "check_spec", "compute", "assert_gradients", "Report", "TensorResult", "Computation",
    "check_network", "compute_network", "NetworkReport",
)  # fmt: skip
# the one exception family (gradcli/errors.py): bad input raises one of these
_ERRORS = (
    "GradcliError", "SpecError", "ShapeError", "OptionError", "TensorFileError", "UserCodeError",
    "InPlaceWriteError", "SampledWarning",
)  # fmt: skip
__all__ = [*_API, *_ERRORS, "__version__"]

if TYPE_CHECKING:
    from typing import Any

    from gradcli.api import Computation as Computation
    from gradcli.api import NetworkReport as NetworkReport
    from gradcli.api import Report as Report
    from gradcli.api import TensorResult as TensorResult
    from gradcli.api import assert_gradients as assert_gradients
    from gradcli.api import check as check
    from gradcli.api import check_network as check_network
    from gradcli.api import check_spec as check_spec
    from gradcli.api import compute as compute
    from gradcli.api import compute_network as compute_network
    from gradcli.errors import GradcliError as GradcliError
    from gradcli.errors import InPlaceWriteError as InPlaceWriteError
    from gradcli.errors import OptionError as OptionError
    from gradcli.errors import SampledWarning as SampledWarning
    from gradcli.errors import ShapeError as ShapeError
    from gradcli.errors import SpecError as SpecError
    from gradcli.errors import TensorFileError as TensorFileError
    from gradcli.errors import UserCodeError as UserCodeError


def __getattr__(name: str) -> "Any":
    if name in _API:
        from gradcli import api

        return getattr(api, name)
    if name in _ERRORS:
        from gradcli import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'gradcli' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
