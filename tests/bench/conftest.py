"""bench/ (`make bench`) is not an installed package: import it from the tree, after everything installed (the
tree's top-level folders, `operator/` among them, must not shadow a real module)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[2]))
