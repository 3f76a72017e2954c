"""Every module constant of the sidecar's compiled modules is `Final`.

Compiled by mypyc, a module-level name that is not Final is looked up in the module's dict at every use (a hash
lookup of the name, ~70 instructions); a Final one is a C static, or its literal value inlined. The request path
read ~100 such names per proxied request: marking them Final took 210k instructions per request to 186k
(`python -m bench instructions`). A constant added without it would quietly cost that again.

Read from the sources (setup.py's list of compiled modules, the sidecar's and the collector's), so the check is
the same in both builds. A constant a test replaces stays a module name (a Final one's replacement would not reach
compiled code): REPLACED_BY_TESTS lists those. Names bound together (`_A, _B = 1, 2`) count too: that is how the OTLP
wire reader's went unmarked, a sixth of an OTLP span's decode in the collector (callgrind).
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[2]
_CONSTANT = re.compile(r"^_?[A-Z][A-Z0-9_]*$")


# tests/collector/test_store_index.py sets it low to reach the relisting with a few traces.
REPLACED_BY_TESTS = {"tracemesh_collector/store.py": {"RELIST_AFTER_WALKING"}}


def _compiled_sources() -> list[Path]:
    spec = importlib.util.spec_from_file_location("tracemesh_setup_sources", _ROOT / "setup.py")
    assert spec is not None and spec.loader is not None
    setup = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup)  # setup() runs only as __main__
    sources: list[Path] = setup.compiled_sources()
    return sources


def _module(path: Path) -> str:
    """`tracemesh_sidecar/proxy/exchange.py`: the path inside its source root."""
    parts = path.relative_to(_ROOT).parts
    return "/".join(parts[1:])  # below sidecar/ or collector/


def constants_not_final(source: str, replaced: frozenset[str] = frozenset()) -> list[str]:
    """Module-level UPPER_CASE names bound once, by a plain assignment, without a Final annotation, but `replaced`."""
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
            if isinstance(node.value, ast.Subscript) or _is_type_variable(node.value):  # `Header = tuple[...]`
                continue
            names, annotation = [node.targets[0].id], None
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Tuple):
            names = [name.id for name in node.targets[0].elts if isinstance(name, ast.Name)]  # never Final
            annotation = None
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            names, annotation = [node.target.id], ast.unparse(node.annotation)
        else:
            continue
        for name in names:
            if _CONSTANT.match(name) and bindings[name] == 1 and name not in replaced and \
                    (annotation is None or not annotation.startswith("Final")):
                found.append(f"{name} (line {node.lineno})")
    return found


def _is_type_variable(value: ast.expr) -> bool:
    """`_K = TypeVar("_K")`: a name for the type checker, not a constant."""
    return isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "TypeVar"


_SOURCES = _compiled_sources()


def test_the_request_path_and_the_store_are_among_the_sources_read() -> None:
    names = {_module(path) for path in _SOURCES}
    assert {"tracemesh_sidecar/proxy/exchange.py", "tracemesh_sidecar/proxy/headers.py",
            "tracemesh_sidecar/telemetry/recorder.py", "tracemesh_sidecar/tracing/b3.py", "tracemesh_sidecar/stats.py",
            "tracemesh_sidecar/spans/otlp_wire.py", "tracemesh_collector/store.py"} <= names
    assert set(REPLACED_BY_TESTS) <= names


@pytest.mark.parametrize("path", _SOURCES, ids=[_module(path) for path in _SOURCES])
def test_each_module_constant_is_final(path: Path) -> None:
    replaced = frozenset(REPLACED_BY_TESTS.get(_module(path), ()))
    assert constants_not_final(path.read_text(), replaced) == [], f"{path}: annotate these `Final`"


def test_the_check_finds_a_constant_without_final() -> None:
    source = 'LIMIT = 3\nNAME: str = "x"\nKEPT: Final = 1\nSWAPPED = 1\nSWAPPED = 2\nAlias = tuple[int, int]\n' \
             '_A, _B = 1, 2\nSET_BY_TESTS = 4\n_K = TypeVar("_K")\n'
    assert constants_not_final(source, frozenset({"SET_BY_TESTS"})) == \
        ["LIMIT (line 1)", "NAME (line 2)", "_A (line 7)", "_B (line 7)"]
