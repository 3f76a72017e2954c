"""Istio's standard metrics, the metadata exchange and Envoy-format access logs (issue 11)."""
