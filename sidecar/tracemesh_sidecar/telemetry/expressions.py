"""The CEL subset Istio's docs use for metric tagOverrides values and access-log filters (pure, no I/O).

Envoy evaluates these as CEL over its request attributes
(https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/advanced/attributes) plus Istio's peer
metadata (`upstream_peer`, `downstream_peer`, also as `filter_state.upstream_peer`). The supported forms:

- attributes: `request.host`, `request.path`, `request.url_path`, `request.method`, `request.scheme`,
  `request.protocol`, `request.id`, `request.useragent`, `request.referer`, `request.query`, `request.size`,
  `request.total_size`, `request.duration`, `request.headers['x-user']` (also `request.headers.x`),
  `response.code`, `response.code_details`, `response.flags`, `response.grpc_status`, `response.size`,
  `response.total_size`, `response.headers['x']`, `source.address`, `source.port`, `destination.address`,
  `destination.port`, `connection.mtls`, `connection.requested_server_name`,
  `connection.termination_details`, `upstream.address`, `upstream.port`, `upstream.local_address`,
  `upstream.transport_failure_reason`, `xds.cluster_name`, `xds.route_name`, and of a peer
  (`upstream_peer.` / `downstream_peer.`, optionally under `filter_state.`): `workload`, `namespace`,
  `cluster`, `service`, `revision`, `app`, `version`, `name`, `labels['app']` (the older
  `labels['app'].value` reads the same);
- literals: 'single' or "double" quoted strings, integers, true, false, lists `[500, 503]`;
- operators: `== != < <= > >=`, `in`, `&&`, `||`, `!`, `? :`, parentheses;
- functions: `string(x)`, `int(x)`, `has(request.headers.x)`, `size(x)`, `duration('1s')`, and methods
  `x.startsWith('a')`, `x.endsWith('a')`, `x.contains('a')`, `x.matches('re')`.

Anything else fails `parse_expression` with an ExpressionError naming what is not supported. Evaluation
follows CEL where it matters for these uses: a missing attribute or header is an error (a tag becomes
`unknown`, a filter does not match), and `&&`/`||` absorb an error when the other side decides.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Final, Protocol

from tracemesh_sidecar.durations import parse_duration_s


class ExpressionError(ValueError):
    """The text is not one of the supported expression forms; `fix` says what to write instead."""

    def __init__(self, problem: str, fix: str = "use one of the forms listed in telemetry/expressions.py") -> None:
        self.fix = fix
        super().__init__(problem)


class EvaluationError(Exception):
    """The expression has no value for this request (a missing header, a type mismatch): CEL's error value."""


class Attributes(Protocol):
    """What an expression reads: one request's attributes by dotted name; KeyError when it has none."""

    def attribute(self, name: str) -> object: ...


# Attribute name -> whether it is a map (indexed by ['key'] or .key).
PEER_FIELDS: Final = ("workload", "namespace", "cluster", "service", "revision", "app", "version", "name", "labels")
ATTRIBUTES: Final[dict[str, bool]] = {
    **{f"request.{name}": False for name in (
        "host", "path", "url_path", "method", "scheme", "protocol", "id", "useragent", "referer", "query",
        "size", "total_size", "duration")},
    "request.headers": True,
    **{f"response.{name}": False for name in ("code", "code_details", "flags", "grpc_status", "size", "total_size")},
    "response.headers": True,
    "source.address": False, "source.port": False,
    "destination.address": False, "destination.port": False,
    "connection.mtls": False, "connection.requested_server_name": False, "connection.termination_details": False,
    "upstream.address": False, "upstream.port": False, "upstream.local_address": False,
    "upstream.transport_failure_reason": False,
    "xds.cluster_name": False, "xds.route_name": False,
    **{f"{peer}.{name}": name == "labels" for peer in ("upstream_peer", "downstream_peer") for name in PEER_FIELDS},
}
_FUNCTIONS: Final = ("string", "int", "has", "size", "duration")
_METHODS: Final = ("startsWith", "endsWith", "contains", "matches")

Evaluator = Callable[[Attributes], object]


@dataclass(frozen=True, slots=True)
class Expression:
    """A parsed expression: `evaluate(attributes)` gives its value or raises EvaluationError."""

    text: str
    evaluate: Evaluator


def parse_expression(text: str) -> Expression:
    """The supported form of `text`, ready to evaluate; ExpressionError for anything else."""
    parser = _Parser(_tokens(text))
    evaluator = parser.expression()
    if not parser.at_end():
        raise ExpressionError(f"unexpected {parser.peek()!r} after a complete expression")
    return Expression(text=text, evaluate=evaluator)


def tag_value(expression: Expression, attributes: Attributes) -> str:
    """A metric label from a tagSet expression: its value as text, `unknown` when it has none (as Istio's stats)."""
    try:
        return to_string(expression.evaluate(attributes))
    except EvaluationError:
        return "unknown"


def filter_matches(expression: Expression, attributes: Attributes) -> bool:
    """An access-log filter: logs only when the expression is true; an error or a non-bool does not log."""
    try:
        return expression.evaluate(attributes) is True
    except EvaluationError:
        return False


def to_string(value: object) -> str:
    """CEL's string() of a value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, timedelta):
        return f"{value.total_seconds():g}s"
    if isinstance(value, str | int | float):
        return str(value)
    raise EvaluationError(f"string() of {type(value).__name__} is not supported")


# ---------------------------------------------------------------------------------------------
# Tokens

_TOKEN: Final = re.compile(r"""
    \s*(?:
      (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<number>\d+)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<op>==|!=|<=|>=|&&|\|\||[<>!?:.,()\[\]])
    )""", re.VERBOSE)
_ESCAPES: Final = {"n": "\n", "t": "\t", "\\": "\\", "'": "'", '"': '"'}


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # string, number, ident, op, end
    text: str
    value: str | int | None = None


def _tokens(text: str) -> list[_Token]:
    tokens = []
    position = 0
    while text[position:].strip():
        match = _TOKEN.match(text, position)
        if match is None or match.lastgroup is None:
            raise ExpressionError(f"cannot read {text[position:].strip()[:20]!r}")
        kind = match.lastgroup
        token_text = match.group(kind)
        value: str | int | None = None
        if kind == "string":
            value = re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), token_text[1:-1])
        elif kind == "number":
            value = int(token_text)
        tokens.append(_Token(kind, token_text, value))
        position = match.end()
    tokens.append(_Token("end", "end of expression"))
    return tokens


# ---------------------------------------------------------------------------------------------
# Parser: recursive descent straight to closures, so evaluation is a few calls per node.


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self._tokens = tokens
        self._index = 0

    def peek(self) -> str:
        return self._tokens[self._index].text

    def at_end(self) -> bool:
        return self._tokens[self._index].kind == "end"

    def _next(self) -> _Token:
        token = self._tokens[self._index]
        self._index += 1
        return token

    def _accept(self, text: str) -> bool:
        token = self._tokens[self._index]
        if token.kind in ("op", "ident") and token.text == text:
            self._index += 1
            return True
        return False

    def _expect(self, text: str) -> None:
        if not self._accept(text):
            raise ExpressionError(f"expected {text!r}, found {self.peek()!r}")

    def expression(self) -> Evaluator:
        condition = self._or()
        if not self._accept("?"):
            return condition
        then = self.expression()
        self._expect(":")
        otherwise = self.expression()
        return lambda a: then(a) if _bool(condition(a)) else otherwise(a)

    def _or(self) -> Evaluator:
        left = self._and()
        while self._accept("||"):
            left = _logical(left, self._and(), absorbing=True)
        return left

    def _and(self) -> Evaluator:
        left = self._relation()
        while self._accept("&&"):
            left = _logical(left, self._relation(), absorbing=False)
        return left

    def _relation(self) -> Evaluator:
        left = self._unary()
        token = self._tokens[self._index]
        if token.text in _COMPARISONS and token.kind in ("op", "ident"):
            self._index += 1
            return _compare(_COMPARISONS[token.text], left, self._unary())
        return left

    def _unary(self) -> Evaluator:
        if self._accept("!"):
            operand = self._unary()
            return lambda a: not _bool(operand(a))
        return self._member()

    def _member(self) -> Evaluator:
        token = self._tokens[self._index]
        if token.kind == "ident" and token.text not in ("true", "false") and self._tokens[self._index + 1].text != "(":
            evaluator = self._attribute()
        else:
            evaluator = self._primary()
        while self._accept("."):
            evaluator = self._method(evaluator)
        return evaluator

    def _method(self, target: Evaluator) -> Evaluator:
        name = self._next()
        if name.kind != "ident" or name.text not in _METHODS or not self._accept("("):
            raise ExpressionError(f"method {name.text!r} is not supported",
                                  f"use one of {', '.join(_METHODS)} on a string")
        argument = self.expression()
        self._expect(")")
        method = _STRING_METHODS[name.text]
        return lambda a: method(_string(target(a)), _string(argument(a)))

    def _primary(self) -> Evaluator:
        token = self._next()
        if token.kind in ("string", "number"):
            value = token.value
            return lambda a: value
        if token.text in ("true", "false"):
            flag = token.text == "true"
            return lambda a: flag
        if token.text == "(":
            inner = self.expression()
            self._expect(")")
            return inner
        if token.text == "[":
            return self._list()
        if token.kind == "ident":
            return self._call(token.text)
        raise ExpressionError(f"unexpected {token.text!r}")

    def _list(self) -> Evaluator:
        items: list[Evaluator] = []
        if not self._accept("]"):
            items.append(self.expression())
            while self._accept(","):
                items.append(self.expression())
            self._expect("]")
        return lambda a: [item(a) for item in items]

    def _call(self, name: str) -> Evaluator:
        if name not in _FUNCTIONS:
            raise ExpressionError(f"function {name!r} is not supported", f"use one of {', '.join(_FUNCTIONS)}")
        self._expect("(")
        if name == "has":
            start = self._index
            self._attribute()
            tokens = self._tokens[start:self._index]
            self._expect(")")
            return _has(tokens)
        argument = self.expression()
        self._expect(")")
        function = _CONVERSIONS[name]
        return lambda a: function(argument(a))

    def _attribute(self) -> Evaluator:
        """A dotted attribute name, then keys of a map attribute: `request.headers['x']`, `request.headers.x`."""
        parts = [self._next().text]
        if parts[0] == "filter_state" and self._tokens[self._index].text == ".":
            self._index += 1
            parts = [self._next().text]
        while ".".join(parts) not in ATTRIBUTES:
            if not self._accept("."):
                raise ExpressionError(f"attribute {'.'.join(parts)!r} is not supported",
                                      "use a request, response, source, destination, connection, upstream, "
                                      "xds or upstream_peer/downstream_peer attribute")
            parts.append(self._next().text)
        name = ".".join(parts)
        if not ATTRIBUTES[name]:
            return lambda a: _read(a, name)
        key = self._map_key(name)
        if key is None:
            return lambda a: _read(a, name)
        if name.endswith("_peer.labels") and self._tokens[self._index].text == "." \
                and self._tokens[self._index + 1].text == "value":
            self._index += 2  # the flatbuffer-era peer metadata's `labels['app'].value` names the same label
        return lambda a: _index(_read(a, name), key)

    def _map_key(self, name: str) -> str | None:
        if self._accept("["):
            token = self._next()
            if token.kind != "string":
                raise ExpressionError(f"the key of {name!r} must be a quoted string, found {token.text!r}")
            self._expect("]")
            return str(token.value)
        if self._tokens[self._index].text == "." and self._tokens[self._index + 1].kind == "ident" \
                and self._tokens[self._index + 1].text not in _METHODS:
            self._index += 1
            return self._next().text
        return None


def _has(tokens: list[_Token]) -> Evaluator:
    parser = _Parser([*tokens, _Token("end", "end of expression")])
    lookup = parser._attribute()

    def evaluate(attributes: Attributes) -> bool:
        try:
            lookup(attributes)
        except EvaluationError:
            return False
        return True

    return evaluate


def _read(attributes: Attributes, name: str) -> object:
    try:
        return attributes.attribute(name)
    except KeyError:
        raise EvaluationError(f"no attribute {name}") from None


def _index(container: object, key: str) -> object:
    if not isinstance(container, Mapping) or key not in container:
        raise EvaluationError(f"no key {key!r}")
    value: object = container[key]
    return value


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise EvaluationError(f"{value!r} is not a bool")
    return value


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise EvaluationError(f"{value!r} is not a string")
    return value


def _logical(left: Evaluator, right: Evaluator, *, absorbing: bool) -> Evaluator:
    """CEL's commutative && and ||: the deciding value (true for ||, false for &&) wins over an error."""

    def evaluate(attributes: Attributes) -> bool:
        try:
            first = _bool(left(attributes))
        except EvaluationError:
            if _bool(right(attributes)) is absorbing:
                return absorbing
            raise
        if first is absorbing:
            return absorbing
        return _bool(right(attributes))

    return evaluate


def _compare(operator: Callable[[object, object], bool], left: Evaluator, right: Evaluator) -> Evaluator:
    def evaluate(attributes: Attributes) -> bool:
        try:
            return operator(left(attributes), right(attributes))
        except TypeError:
            raise EvaluationError("operands of different types") from None

    return evaluate


def _same_type(a: object, b: object) -> None:
    if isinstance(a, bool) != isinstance(b, bool) or (isinstance(a, str) != isinstance(b, str)):
        raise TypeError


def _equal(a: object, b: object) -> bool:
    _same_type(a, b)
    return a == b


def _ordered(test: Callable[[int], bool]) -> Callable[[object, object], bool]:
    def compare(a: object, b: object) -> bool:
        _same_type(a, b)
        if isinstance(a, list | bool):
            raise TypeError
        return test((a > b) - (a < b))  # type: ignore[operator]

    return compare


def _contained(a: object, b: object) -> bool:
    if isinstance(b, list):
        return any(isinstance(a, str) == isinstance(item, str) and a == item for item in b)
    if isinstance(b, Mapping):
        return a in b
    raise TypeError


_COMPARISONS: Final[dict[str, Callable[[object, object], bool]]] = {
    "==": _equal,
    "!=": lambda a, b: not _equal(a, b),
    "<": _ordered(lambda sign: sign < 0),
    "<=": _ordered(lambda sign: sign <= 0),
    ">": _ordered(lambda sign: sign > 0),
    ">=": _ordered(lambda sign: sign >= 0),
    "in": _contained,
}


def _to_int(value: object) -> int:
    if isinstance(value, bool):
        raise EvaluationError("int() of a bool")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
        return int(value)
    raise EvaluationError(f"int() of {value!r}")


def _size(value: object) -> int:
    if isinstance(value, str | list | Mapping):
        return len(value)
    raise EvaluationError(f"size() of {type(value).__name__}")


def _duration(value: object) -> timedelta:
    try:
        return timedelta(seconds=parse_duration_s(_string(value)))
    except ValueError:
        raise EvaluationError(f"duration({value!r})") from None


def _matches(text: str, pattern: str) -> bool:
    try:
        return re.search(pattern, text) is not None  # CEL's matches is RE2's partial match
    except re.error:
        raise EvaluationError(f"bad regular expression {pattern!r}") from None


_CONVERSIONS: Final[dict[str, Callable[[object], object]]] = {
    "string": to_string, "int": _to_int, "size": _size, "duration": _duration,
}
_STRING_METHODS: Final[dict[str, Callable[[str, str], bool]]] = {
    "startsWith": str.startswith, "endsWith": str.endswith, "contains": str.__contains__, "matches": _matches,
}
