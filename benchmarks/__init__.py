"""Runnable benchmarks: each prints JSON; none is a test."""
