"""takeover: when should a driving agent hand control to a human, and what does it learn
from what the human then does.

Importing the package registers the ``takeover/*`` Gymnasium environments.
"""

from __future__ import annotations

__version__ = "0.1.0"

import takeover.envs  # noqa: E402,F401  (registers the environments)
