"""Checks requests and responses against the official Zipkin API definition (../shared/spec/zipkin2-api.yaml).

Request query parameters are checked against the operation's parameter list (known names,
required ones present, integer/pattern/length constraints); response bodies against the
schema of the documented status code, resolved from the spec's `definitions` with jsonschema.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

SPEC_FILE = Path(__file__).resolve().parents[2] / ".." / "shared" / "spec" / "zipkin2-api.yaml"
# The spec gives GET /spans the response schema ListOfSpans, a slip: Zipkin's server (and every
# client, its UI included) answers that endpoint with span names, strings, as /services does.
RESPONSE_ERRATA: Mapping[tuple[str, str, int], Mapping[str, Any]] = {
    ("get", "/spans", 200): {"type": "array", "items": {"type": "string"}},
}


class ZipkinApiSpec:
    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document
        self.base_path: str = document["basePath"]

    @classmethod
    def load(cls) -> ZipkinApiSpec:
        """The spec, or a skipped test when it is absent."""
        spec = cls.load_if_present()
        if spec is None:
            pytest.skip("../shared/spec not present (a user's clone has no shared/)")
        return spec

    @classmethod
    def load_if_present(cls) -> ZipkinApiSpec | None:
        return cls(yaml.safe_load(SPEC_FILE.read_text())) if SPEC_FILE.exists() else None

    def operation(self, method: str, path: str) -> Mapping[str, Any]:
        """The spec's operation for a concrete path such as /api/v2/trace/abc."""
        return self.document["paths"][self.template(method, path)][method.lower()]  # type: ignore[no-any-return]

    def template(self, method: str, path: str) -> str:
        relative = path.removeprefix(self.base_path)
        for template, operations in self.document["paths"].items():
            pattern = re.sub(r"\\\{[^/]+\\\}", "[^/]+", re.escape(template))
            if re.fullmatch(pattern, relative) and method.lower() in operations:
                return template  # type: ignore[no-any-return]
        raise AssertionError(f"{method} {path} is not in the Zipkin API spec")

    def check_request(self, method: str, path: str, query: Mapping[str, str]) -> None:
        parameters = {p["name"]: p for p in self.operation(method, path).get("parameters", []) if p["in"] == "query"}
        unknown = set(query) - set(parameters)
        assert not unknown, f"{path}: parameters {unknown} are not in the spec"
        for name, parameter in parameters.items():
            if name not in query:
                assert not parameter.get("required"), f"{path}: required parameter {name} missing"
                continue
            value = query[name]
            if parameter["type"] == "integer":
                assert re.fullmatch(r"-?\d+", value), f"{path}: {name}={value!r} is not an integer"
            if "pattern" in parameter:
                assert re.search(parameter["pattern"], value), f"{path}: {name}={value!r} breaks the pattern"
            assert len(value) >= parameter.get("minLength", 0), f"{path}: {name} too short"

    def check_response(self, method: str, path: str, status: int, body: Any) -> None:
        responses = self.operation(method, path)["responses"]
        assert str(status) in responses, f"{method} {path}: status {status} is not documented"
        schema = RESPONSE_ERRATA.get((method.lower(), self.template(method, path), status),
                                     responses[str(status)].get("schema"))
        if schema is not None:
            self.validate(body, schema)

    def validate(self, instance: Any, schema: Mapping[str, Any]) -> None:
        """Swagger 2.0 schemas are JSON Schema draft 4 with `#/definitions/...` references into the spec."""
        root = {**schema, "definitions": self.document["definitions"]}
        validator = jsonschema.Draft4Validator(root, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)
        validator.validate(instance)

    def definition(self, name: str) -> Mapping[str, Any]:
        return {"$ref": f"#/definitions/{name}"}
