"""Server plumbing shared by every service: config, errors, TLS, tokens, limits, metrics, health, logs."""
