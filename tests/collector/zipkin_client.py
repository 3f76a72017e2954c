"""A client for the collector's Zipkin API that checks every request and response against the official spec."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
from zipkin_api_spec import ZipkinApiSpec

from tracemesh_collector import RunningCollector
from tracemesh_sidecar.spans import zipkin_json
from tracemesh_sidecar.spans.model import Span


class ZipkinClient:
    """Calls the collector's Zipkin API; every request and response is checked against the official
    spec when ../shared/spec is present."""

    def __init__(self, http: aiohttp.ClientSession, collector: RunningCollector, spec: ZipkinApiSpec | None) -> None:
        self.http = http
        self.base = collector.zipkin_url
        self.spec = spec

    async def get(self, path: str, *, in_spec: bool = True, **query: str) -> tuple[int, Any]:
        """`in_spec=False` for what Zipkin serves beyond this spec version (remoteServices, remoteServiceName)."""
        spec = self.spec if in_spec else None
        if spec is not None:
            spec.check_request("get", path, query)
        async with self.http.get(self.base + path, params=query) as response:
            body = await response.json() if response.content_type == "application/json" else await response.text()
            status = response.status
        if spec is not None:
            spec.check_response("get", path, status, body)
        return status, body

    async def post_spans(self, spans: list[Span]) -> tuple[int, str]:
        body = zipkin_json.encode_spans(spans)
        if self.spec is not None:
            self.spec.validate([zipkin_json.span_to_zipkin_dict(span) for span in spans],
                               self.spec.definition("ListOfSpans"))
        return await self.post(body, "application/json")

    async def post(self, body: bytes, content_type: str, **headers: str) -> tuple[int, str]:
        async with self.http.post(f"{self.base}/api/v2/spans", data=body,
                                  headers={"Content-Type": content_type, **headers}) as response:
            return response.status, await response.text()


def as_dicts(traces: list[list[Span]]) -> list[list[Mapping[str, Any]]]:
    return [[zipkin_json.span_to_zipkin_dict(span) for span in spans] for spans in traces]
