"""Server plumbing shared by every service: config, errors, metrics, health, logs."""
