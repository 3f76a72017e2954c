"""Istio's Bookinfo sample, in Python: productpage, details, reviews (v1/v2/v3) and ratings.

Same APIs, environment variables and behaviour as Istio's services, so Istio's tracing tasks
work against it unchanged. Run one with `python -m tracemesh_bookinfo SERVICE`.
"""
