"""The bottom floor: what client and server code both need, and nothing above it.

The audio format every part speaks (16 kHz mono LINEAR16 in 30 ms frames), one resampler,
channel building (TLS, tokens, the loopback rule), the health check, and ConfigError.
Nothing here imports the conversation, the services or the front doors.
"""
