import pytest

from tracemesh_sidecar.tracing.hosts import normalize_host


@pytest.mark.parametrize(("authority", "expected"), [
    ("reviews", ("reviews.default.svc.cluster.local", None)),
    ("reviews:9080", ("reviews.default.svc.cluster.local", 9080)),
    ("Reviews:9080", ("reviews.default.svc.cluster.local", 9080)),
    ("reviews.other", ("reviews.other.svc.cluster.local", None)),
    ("reviews.other:9080", ("reviews.other.svc.cluster.local", 9080)),
    ("reviews.other.svc", ("reviews.other.svc.cluster.local", None)),
    ("reviews.other.svc:9080", ("reviews.other.svc.cluster.local", 9080)),
    ("reviews.default.svc.cluster.local", ("reviews.default.svc.cluster.local", None)),
    ("reviews.default.svc.cluster.local:9080", ("reviews.default.svc.cluster.local", 9080)),
    ("reviews.default.svc.cluster.local.:9080", ("reviews.default.svc.cluster.local", 9080)),
    ("www.example.co.uk:443", ("www.example.co.uk", 443)),
    ("10.0.0.7:9080", ("10.0.0.7", 9080)),
    ("10.0.0.7", ("10.0.0.7", None)),
    ("[::1]:8080", ("::1", 8080)),
    ("[fd00::7]", ("fd00::7", None)),
    ("fd00::7", ("fd00::7", None)),
    ("reviews-2", ("reviews-2.default.svc.cluster.local", None)),
    ("1.2.3", ("1.2.3", None)),  # not an IP: a three-label name, left as is
    # Bad ports: reported as None, never raised.
    ("reviews:", ("reviews.default.svc.cluster.local", None)),
    ("reviews:http", ("reviews.default.svc.cluster.local", None)),
    ("reviews:0", ("reviews.default.svc.cluster.local", None)),
    ("reviews:65536", ("reviews.default.svc.cluster.local", None)),
    ("reviews:-1", ("reviews.default.svc.cluster.local", None)),
    ("reviews:٣", ("reviews.default.svc.cluster.local", None)),  # a non-ASCII digit
    ("[::1]x", ("::1", None)),
    ("", ("", None)),
    (":9080", ("", 9080)),
])
def test_normalize_host(authority: str, expected: tuple[str, int | None]) -> None:
    assert normalize_host(authority, "default", "cluster.local") == expected


def test_custom_cluster_domain() -> None:
    assert normalize_host("ratings.prod:9080", "default", "corp.example") == ("ratings.prod.svc.corp.example", 9080)
    assert normalize_host("ratings.prod.svc.corp.example", "default", "corp.example") == (
        "ratings.prod.svc.corp.example", None)
