"""Pure tracing core: trace context formats, sampling, and building a span for one proxy hop."""
