"""The dataclasses that write their own `__init__` (so that mypyc compiles it: the one @dataclass generates stays
interpreted Python) take exactly their fields, in order, with the fields' defaults, and set every one; and each
defines `__reduce__`, since a native class with its own `__init__` cannot be created without its arguments (copy
and pickle: tests/spans/test_span_copies.py, tests/telemetry/test_record_copies.py).

Read from the sources, so the check is the same in the compiled and the pure build.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[2]
_SOURCES = sorted((_ROOT / "sidecar" / "tracemesh_sidecar").rglob("*.py")) + \
    sorted((_ROOT / "collector" / "tracemesh_collector").rglob("*.py"))


def _dataclasses_with_an_init() -> list[tuple[str, ast.ClassDef]]:
    found = []
    for path in _SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(_is_dataclass(decorator) for decorator in node.decorator_list) \
                    and any(isinstance(item, ast.FunctionDef) and item.name == "__init__" for item in node.body):
                found.append((f"{path.relative_to(_ROOT)}:{node.name}", node))
    return found


def _is_dataclass(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return (isinstance(target, ast.Name) and target.id == "dataclass") or \
        (isinstance(target, ast.Attribute) and target.attr == "dataclass")


def _field_default(value: ast.expr | None) -> str | None:
    """A field's default as __init__ should give it: None for a default_factory, no default (None) when required."""
    if value is None:
        return None
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "field":
        keywords = {keyword.arg: keyword.value for keyword in value.keywords}
        if "default_factory" in keywords:
            return "None"
        return ast.unparse(keywords["default"]) if "default" in keywords else None
    return ast.unparse(value)


_CLASSES = _dataclasses_with_an_init()


def test_the_span_model_and_the_request_record_are_among_them() -> None:
    names = {name.rpartition(":")[2] for name, _ in _CLASSES}
    assert {"Span", "Endpoint", "Annotation", "OtlpDetail", "Record"} <= names


@pytest.mark.parametrize("name,node", _CLASSES, ids=[name for name, _ in _CLASSES])
def test_an_explicit_init_takes_and_sets_every_field_as_the_dataclass_would(name: str, node: ast.ClassDef) -> None:
    fields = [(item.target.id, _field_default(item.value)) for item in node.body
              if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
              and not ast.unparse(item.annotation).startswith("ClassVar")]
    init = next(item for item in node.body if isinstance(item, ast.FunctionDef) and item.name == "__init__")
    arguments = init.args.args[1:]
    defaults = [None] * (len(arguments) - len(init.args.defaults)) + [ast.unparse(d) for d in init.args.defaults]
    assert [(argument.arg, default) for argument, default in zip(arguments, defaults, strict=True)] == fields
    assigned = [(target.attr, ast.unparse(statement.value)) for statement in init.body
                if isinstance(statement, ast.Assign) for target in statement.targets
                if isinstance(target, ast.Attribute) and ast.unparse(target.value) == "self"]
    assert assigned == [(field, _given(field, node)) for field, _ in fields]


def _given(field: str, node: ast.ClassDef) -> str:
    """What `__init__` sets a field to: the argument, or a new empty container for a default_factory's None."""
    factory = next((keyword.value for item in node.body
                    if isinstance(item, ast.AnnAssign) and ast.unparse(item.target) == field
                    and isinstance(item.value, ast.Call)
                    for keyword in item.value.keywords if keyword.arg == "default_factory"), None)
    if factory is None:
        return field
    empty = {"dict": "{}", "list": "[]"}[ast.unparse(factory)]
    return f"{empty} if {field} is None else {field}"


@pytest.mark.parametrize("name,node", _CLASSES, ids=[name for name, _ in _CLASSES])
def test_an_explicit_init_comes_with_a_reduce(name: str, node: ast.ClassDef) -> None:
    assert any(isinstance(item, ast.FunctionDef) and item.name == "__reduce__" for item in node.body)
