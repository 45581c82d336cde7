"""Streaming text-to-speech service (Piper by default, Coqui TTS optional)."""
