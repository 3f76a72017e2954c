"""images/tracemesh_images (the `make images-smoke` runner) is not an installed package: import it from the tree."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "images"))
