"""Chat service benchmarks."""
