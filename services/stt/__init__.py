"""Streaming speech-to-text service (faster-whisper)."""
