"""The edge client: microphone and speaker on the user's machine, chained through the three services."""
