"""Resource attributes from resource detectors (Istio's `resourceDetectors`), pure: the environment is passed in.

`environment` reads OTEL_RESOURCE_ATTRIBUTES as Envoy's environment detector does
(source/extensions/tracers/opentelemetry/resource_detectors/environment/environment_resource_detector.cc):
comma-separated `key=value` entries, an entry that is not exactly one key and one value ignored on its own.
Keys and values are trimmed and percent-decoded as the OpenTelemetry specification's
OTEL_RESOURCE_ATTRIBUTES says (W3C Baggage's encoding); an entry that does not decode is ignored too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final
from urllib.parse import unquote_to_bytes

ENVIRONMENT_VARIABLE: Final = "OTEL_RESOURCE_ATTRIBUTES"
_BAD_PERCENT: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")


def detect_resource(detectors: Iterable[str], environ: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The attributes the named detectors find; later detectors override earlier ones, as Envoy merges them."""
    attributes: dict[str, str] = {}
    for detector in detectors:
        if detector == "environment":
            attributes.update(parse_resource_attributes(environ.get(ENVIRONMENT_VARIABLE, "")))
    return tuple(attributes.items())


def parse_resource_attributes(text: str) -> dict[str, str]:
    """OTEL_RESOURCE_ATTRIBUTES' entries; malformed ones (no `=`, several, an empty key, bad %-escapes) skipped."""
    attributes = {}
    for entry in text.split(","):
        parts = entry.split("=")
        if len(parts) != 2:
            continue
        key, value = _decode(parts[0]), _decode(parts[1])
        if key and value is not None:
            attributes[key] = value
    return attributes


def _decode(text: str) -> str | None:
    text = text.strip()
    if _BAD_PERCENT.search(text):
        return None
    try:
        return unquote_to_bytes(text).decode("utf-8")
    except UnicodeDecodeError:
        return None
