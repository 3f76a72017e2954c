"""Every module constant of the sidecar's compiled modules is `Final`.

Compiled by mypyc, a module-level name that is not Final is looked up in the module's dict at every use (a hash
lookup of the name, ~70 instructions); a Final one is a C static, or its literal value inlined. The request path
read ~100 such names per proxied request: marking them Final took 210k instructions per request to 186k
(`python -m bench instructions`). A constant added without it would quietly cost that again.

Read from the sources (setup.py's list of compiled modules), so the check is the same in both builds. The
collector's compiled modules are left out: its tests replace two of their constants (RELIST_AFTER_WALKING, SLICE),
which a Final constant would not let reach compiled code.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[2]
_CONSTANT = re.compile(r"^_?[A-Z][A-Z0-9_]*$")


def _sidecar_compiled_sources() -> list[Path]:
    spec = importlib.util.spec_from_file_location("tracemesh_setup_sources", _ROOT / "setup.py")
    assert spec is not None and spec.loader is not None
    setup = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup)  # setup() runs only as __main__
    sources: list[Path] = setup.compiled_sources()
    return [path for path in sources if setup.PACKAGE in path.parents]


def constants_not_final(source: str) -> list[str]:
    """Module-level UPPER_CASE names bound once, by a plain assignment, without a Final annotation."""
    tree = ast.parse(source)
    bindings: dict[str, int] = {}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else []
        for target in targets:
            for name in ast.walk(target):
                if isinstance(name, ast.Name):
                    bindings[name.id] = bindings.get(name.id, 0) + 1
    found = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, annotation = node.targets[0].id, None
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name, annotation = node.target.id, ast.unparse(node.annotation)
        else:
            continue
        if not _CONSTANT.match(name) or bindings[name] != 1:
            continue
        if isinstance(node.value, ast.Subscript):  # a type alias: `Header = tuple[bytes, bytes]`
            continue
        if annotation is None or not annotation.startswith("Final"):
            found.append(f"{name} (line {node.lineno})")
    return found


_SOURCES = _sidecar_compiled_sources()


def test_the_request_path_is_among_the_sources_read() -> None:
    names = {path.relative_to(_ROOT / "sidecar" / "tracemesh_sidecar").as_posix() for path in _SOURCES}
    assert {"proxy/exchange.py", "proxy/headers.py", "telemetry/recorder.py", "tracing/b3.py", "stats.py"} <= names


@pytest.mark.parametrize("path", _SOURCES, ids=[path.name if path.parent.name == "tracemesh_sidecar" else
                                                f"{path.parent.name}/{path.name}" for path in _SOURCES])
def test_each_module_constant_is_final(path: Path) -> None:
    assert constants_not_final(path.read_text()) == [], f"{path}: annotate these `Final`"


def test_the_check_finds_a_constant_without_final() -> None:
    source = 'LIMIT = 3\nNAME: str = "x"\nKEPT: Final = 1\nSWAPPED = 1\nSWAPPED = 2\nAlias = tuple[int, int]\n'
    assert constants_not_final(source) == ["LIMIT (line 1)", "NAME (line 2)"]
