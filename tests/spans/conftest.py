"""Fixtures for the codec tests: the spans the proxy reports for one RPC."""

from __future__ import annotations

import pytest
from proxy_span_samples import make_client_span, make_server_span

from tracemesh_sidecar.spans.model import Span


@pytest.fixture
def proxy_spans() -> list[Span]:
    """A CLIENT span and a SERVER span (a 5xx with error=true) of one RPC, every contract tag set."""
    return [make_client_span(), make_server_span()]
