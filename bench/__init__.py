"""Benchmarks (not tests): latency, accuracy, throughput."""
