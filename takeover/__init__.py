"""takeover: when should a driving agent hand control to a human, and what does it learn
from what the human then does.

The shared base (this package: records, log I/O, config, registry, protocols) imports no
layer, so ``import takeover.records`` loads neither gymnasium nor numba. The layers are
``takeover.envs``, ``takeover.agents``, ``takeover.supervisor`` and ``takeover.experiments``;
importing ``takeover.envs`` registers the ``takeover/*`` Gymnasium environments.
"""

from __future__ import annotations

import os as _os

__version__ = "0.1.0"

# Source layout: the layers live in top-level folders beside this one (``envs/``,
# ``agents/``, ...) and an installed wheel maps them under ``takeover/``. Run from a source
# checkout without an install (or with this folder shadowing the installed package, as it
# does from the repo root), ``takeover.envs`` must still resolve: let the package's search
# path include the checkout root when the layers are not inside it.
_here = _os.path.dirname(_os.path.abspath(__file__))
_root = _os.path.dirname(_here)
if (not _os.path.isdir(_os.path.join(_here, "envs"))
        and _os.path.isfile(_os.path.join(_root, "envs", "__init__.py"))
        and _os.path.isfile(_os.path.join(_root, "supervisor", "__init__.py"))):
    __path__.append(_root)  # noqa: F821
