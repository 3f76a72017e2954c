"""The proxy's counters, shown on the admin port as Envoy-style text and on 15090 for Prometheus."""

from __future__ import annotations


class Stats:
    """Monotonic counters and settable gauges keyed by dotted names (`tracing.spans_dropped`)."""

    def __init__(self) -> None:
        # A plain dict, not a Counter: compiled, a subclass of dict takes the generic mapping calls, and `inc` runs
        # a few times per request (callgrind: ~1.6k instructions an inc with a Counter).
        self.counters: dict[str, int] = {}
        self.gauges: dict[str, float] = {}

    def inc(self, name: str, amount: int = 1) -> None:
        counters = self.counters
        counters[name] = counters.get(name, 0) + amount

    def set_gauge(self, name: str, value: float) -> None:
        self.gauges[name] = value

    def get(self, name: str) -> float:
        if name in self.gauges:
            return self.gauges[name]
        return self.counters.get(name, 0)

    def render_text(self) -> str:
        values = {**self.counters, **self.gauges}
        return "".join(f"{name}: {_number(values[name])}\n" for name in sorted(values))

    def render_prometheus(self, openmetrics: bool = False) -> str:
        """Prometheus text format, or OpenMetrics (a counter's family is named without `_total`)."""
        lines = []
        for name in sorted(self.counters):
            metric = _metric_name(name)
            family = metric if openmetrics else metric + "_total"
            # HELP: the proxy's own name of it (promtool's lint asks every metric for one).
            lines += [f"# HELP {family} the proxy's counter {name}", f"# TYPE {family} counter",
                      f"{metric}_total {self.counters[name]}"]
        for name in sorted(self.gauges):
            metric = _metric_name(name)
            lines += [f"# HELP {metric} the proxy's gauge {name}", f"# TYPE {metric} gauge",
                      f"{metric} {_number(self.gauges[name])}"]
        return "\n".join(lines) + "\n"


def _metric_name(name: str) -> str:
    cleaned = "".join(char if char.isalnum() else "_" for char in name)
    return f"tracemesh_{cleaned}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)
