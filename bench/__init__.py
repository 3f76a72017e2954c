"""Benchmarks: measured against a baseline in the same run, printed, never asserted as tests."""
