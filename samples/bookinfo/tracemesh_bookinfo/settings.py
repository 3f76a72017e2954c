"""What a Bookinfo service reads from its environment, with Istio's variable names and defaults."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_PORT = 9080


class SettingsError(ValueError):
    """An environment variable has a value the service cannot use."""


@dataclass(frozen=True, slots=True)
class Upstream:
    """A backend service, addressed by name the way Kubernetes DNS names it."""

    host: str
    port: int

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"


@dataclass(frozen=True, slots=True)
class Settings:
    bind_address: str
    port: int
    version: str
    details: Upstream
    reviews: Upstream
    ratings: Upstream
    # reviews only: v1 shows no ratings, v2 black stars, v3 red stars
    ratings_enabled: bool
    star_color: str
    pod_name: str
    cluster_name: str


def settings_from_env(environ: Mapping[str, str]) -> Settings:
    version = environ.get("SERVICE_VERSION", "v1")
    domain = environ.get("SERVICES_DOMAIN", "")
    suffix = f".{domain}" if domain else ""
    return Settings(
        bind_address=environ.get("BIND_ADDRESS", "0.0.0.0"),
        port=_port(environ, "PORT", DEFAULT_PORT),
        version=version,
        details=_upstream(environ, "DETAILS", "details", suffix),
        reviews=_upstream(environ, "REVIEWS", "reviews", suffix),
        ratings=_upstream(environ, "RATINGS", "ratings", suffix),
        ratings_enabled=_flag(environ, "ENABLE_RATINGS", default=version != "v1"),
        star_color=environ.get("STAR_COLOR", "red" if version == "v3" else "black"),
        pod_name=environ.get("HOSTNAME", ""),
        cluster_name=environ.get("CLUSTER_NAME", "null"),
    )


def _upstream(environ: Mapping[str, str], prefix: str, default_host: str, suffix: str) -> Upstream:
    host = environ.get(f"{prefix}_HOSTNAME", default_host)
    return Upstream(host=f"{host}{suffix}", port=_port(environ, f"{prefix}_SERVICE_PORT", DEFAULT_PORT))


def _port(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise SettingsError(f"{name}={raw!r} is not a port; set it to a number from 1 to 65535")
    return int(raw)


def _flag(environ: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() not in ("true", "false"):
        raise SettingsError(f"{name}={raw!r} is not a boolean; set it to true or false")
    return raw.lower() == "true"
