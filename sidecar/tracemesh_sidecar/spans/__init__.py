"""Spans: the model (Zipkin v2 shaped) and its wire codecs."""
