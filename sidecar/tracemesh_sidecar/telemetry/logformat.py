"""Envoy's access-log command operators (`%REQ(:METHOD)%`, `%DURATION%` ...), TEXT and JSON lines (pure).

Istio's default TEXT format and default JSON fields are copied from pilot/pkg/model/telemetry_logging.go
(`EnvoyTextLogFormat`, `EnvoyJSONLogFormatIstio`). Values follow Envoy's formatter: an absent value is `-`
in TEXT and null in JSON; in JSON a field that is exactly one operator keeps its type (%RESPONSE_CODE%,
%BYTES_RECEIVED%, %BYTES_SENT%, %DURATION% are numbers); keys are sorted, as Envoy writes a Struct.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Final

from tracemesh_sidecar.telemetry.record import Record, address

# Byte for byte Istio's EnvoyTextLogFormat (pilot/pkg/model/telemetry_logging.go), the default TEXT line.
ISTIO_TEXT_FORMAT: Final = (
    "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% "
    "%PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% "
    "%RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "
    "\"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% "
    "%DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" "
    "\"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" "
    "%UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% "
    "%DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n"
)
# Istio's EnvoyJSONLogFormatIstio, the default JSON fields.
ISTIO_JSON_LABELS: Final[tuple[tuple[str, str], ...]] = (
    ("start_time", "%START_TIME%"),
    ("route_name", "%ROUTE_NAME%"),
    ("method", "%REQ(:METHOD)%"),
    ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
    ("protocol", "%PROTOCOL%"),
    ("response_code", "%RESPONSE_CODE%"),
    ("response_flags", "%RESPONSE_FLAGS%"),
    ("response_code_details", "%RESPONSE_CODE_DETAILS%"),
    ("connection_termination_details", "%CONNECTION_TERMINATION_DETAILS%"),
    ("bytes_received", "%BYTES_RECEIVED%"),
    ("bytes_sent", "%BYTES_SENT%"),
    ("duration", "%DURATION%"),
    ("upstream_service_time", "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%"),
    ("x_forwarded_for", "%REQ(X-FORWARDED-FOR)%"),
    ("user_agent", "%REQ(USER-AGENT)%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("authority", "%REQ(:AUTHORITY)%"),
    ("upstream_host", "%UPSTREAM_HOST%"),
    ("upstream_cluster", "%UPSTREAM_CLUSTER_RAW%"),
    ("upstream_local_address", "%UPSTREAM_LOCAL_ADDRESS%"),
    ("downstream_local_address", "%DOWNSTREAM_LOCAL_ADDRESS%"),
    ("downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%"),
    ("requested_server_name", "%REQUESTED_SERVER_NAME%"),
    ("upstream_transport_failure_reason", "%UPSTREAM_TRANSPORT_FAILURE_REASON%"),
)

Value = str | int | None
Getter = Callable[[Record], Value]


class FormatError(ValueError):
    """An access-log format uses an operator this proxy does not support; `fix` says what to write."""

    def __init__(self, problem: str, fix: str) -> None:
        self.fix = fix
        super().__init__(problem)


def _without_port(pair: tuple[str, int] | None) -> str | None:
    return pair[0] if pair is not None and pair[0] else None


_SIMPLE: Final[dict[str, Getter]] = {
    "PROTOCOL": lambda r: None if r.tcp else r.protocol,
    "RESPONSE_CODE": lambda r: r.status,
    "RESPONSE_FLAGS": lambda r: r.flags,
    "RESPONSE_CODE_DETAILS": lambda r: None if r.details == "-" else r.details,
    "CONNECTION_TERMINATION_DETAILS": lambda r: None,
    "UPSTREAM_TRANSPORT_FAILURE_REASON": lambda r: None,
    "REQUESTED_SERVER_NAME": lambda r: None,  # no TLS: no SNI
    "BYTES_RECEIVED": lambda r: r.bytes_received,
    "BYTES_SENT": lambda r: r.bytes_sent,
    "DURATION": lambda r: r.duration_ms,
    "UPSTREAM_HOST": lambda r: address(r.upstream_host),
    "UPSTREAM_CLUSTER": lambda r: r.cluster,
    "UPSTREAM_CLUSTER_RAW": lambda r: r.cluster,
    "UPSTREAM_LOCAL_ADDRESS": lambda r: address(r.upstream_local),
    "DOWNSTREAM_LOCAL_ADDRESS": lambda r: address(r.downstream_local),
    "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT": lambda r: _without_port(r.downstream_local),
    "DOWNSTREAM_REMOTE_ADDRESS": lambda r: address(r.downstream_remote),
    "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT": lambda r: _without_port(r.downstream_remote),
    "DOWNSTREAM_DIRECT_REMOTE_ADDRESS": lambda r: address(r.downstream_remote),
    "DOWNSTREAM_PEER_URI_SAN": lambda r: None,
    "UPSTREAM_PEER_URI_SAN": lambda r: None,
    "ROUTE_NAME": lambda r: r.route_name,
    "HOSTNAME": lambda r: socket.gethostname(),
}
_OPERATOR: Final = re.compile(r"%([A-Z_]+)(?:\(([^)]*)\))?(?::(\d+))?%")
_PSEUDO: Final[dict[str, Getter]] = {
    ":method": lambda r: r.method or None,
    ":path": lambda r: r.path or None,
    ":authority": lambda r: r.authority or None,
    ":scheme": lambda r: None if r.tcp else "http",
}


def _header(source: str, names: str, limit: int | None) -> Getter:
    """%REQ(X?Y):N%: header X, else Y, cut to N characters."""
    first, _, alternative = names.lower().partition("?")
    candidates = [name for name in (first, alternative) if name]

    def read(record: Record) -> Value:
        headers: Mapping[str, str] = record.request_headers if source == "REQ" else record.response_headers
        for name in candidates:
            pseudo = _PSEUDO.get(name) if source == "REQ" else None
            value = pseudo(record) if pseudo is not None else headers.get(name)
            if value is not None:
                return value if limit is None else str(value)[:limit]
        return None

    return read


def _start_time(pattern: str | None) -> Getter:
    if not pattern:  # Envoy's default, %Y-%m-%dT%H:%M:%E3SZ; its text up to the second is made once per second
        second_text = ["", -1]

        def read_default(record: Record) -> Value:
            second = record.start_us // 1_000_000
            if second != second_text[1]:
                second_text[:] = [datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S."), second]
            return f"{second_text[0]}{record.start_us // 1000 % 1000:03d}Z"

        return read_default

    def read(record: Record) -> Value:
        moment = datetime.fromtimestamp(record.start_us / 1e6, UTC)
        millis = f"{moment.second:02d}.{record.start_us // 1000 % 1000:03d}"
        return moment.strftime(pattern.replace("%E3S", millis).replace("%s", str(record.start_us // 1_000_000)))

    return read


def _operator(name: str, argument: str | None, limit: str | None) -> Getter:
    if name in ("REQ", "RESP"):
        if not argument:
            raise FormatError(f"%{name}% needs a header name", f"write %{name}(header-name)%")
        return _header(name, argument, int(limit) if limit else None)
    if name == "START_TIME":
        return _start_time(argument)
    getter = _SIMPLE.get(name)
    if getter is None or argument is not None:
        raise FormatError(f"the command operator %{name}{'(' + argument + ')' if argument else ''}% is not supported",
                          "use START_TIME, REQ(...), RESP(...) or one of " + ", ".join(sorted(_SIMPLE)))
    return getter


Piece = str | Getter


def compile_text(text: str) -> list[Piece]:
    """A format string as literal pieces and operator getters; FormatError for an unsupported operator."""
    pieces: list[Piece] = []
    position = 0
    for match in _OPERATOR.finditer(text):
        if match.start() > position:
            pieces.append(text[position:match.start()])
        pieces.append(_operator(match.group(1), match.group(2), match.group(3)))
        position = match.end()
    if position < len(text):
        pieces.append(text[position:])
    return pieces


class TextFormat:
    def __init__(self, text: str | None) -> None:
        self._pieces = compile_text(ISTIO_TEXT_FORMAT if text is None else text)

    def line(self, record: Record) -> str:
        parts = []
        for piece in self._pieces:
            if isinstance(piece, str):
                parts.append(piece)
            else:
                value = piece(record)
                parts.append("-" if value is None else str(value))
        line = "".join(parts)
        return line if line.endswith("\n") else line + "\n"


class JsonFormat:
    def __init__(self, labels: tuple[tuple[str, str], ...]) -> None:
        fields = sorted(labels or ISTIO_JSON_LABELS)
        self._fields: list[tuple[str, Getter | None, list[Piece]]] = []
        for key, text in fields:
            pieces = compile_text(text)
            whole = _OPERATOR.fullmatch(text)
            single = pieces[0] if len(pieces) == 1 and whole is not None and not isinstance(pieces[0], str) else None
            self._fields.append((key, single, pieces))

    def line(self, record: Record) -> str:
        document: dict[str, Value] = {}
        for key, single, pieces in self._fields:
            if single is not None:
                document[key] = single(record)
            else:
                document[key] = "".join(piece if isinstance(piece, str) else
                                        ("-" if (value := piece(record)) is None else str(value))
                                        for piece in pieces)
        return json.dumps(document, separators=(",", ":")) + "\n"


def check_format(text: str) -> None:
    """Raises FormatError when `text` uses an operator this proxy does not support."""
    compile_text(text)
