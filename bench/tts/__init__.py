"""TTS benchmarks."""
