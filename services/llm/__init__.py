"""The chat (LLM) service: streaming replies for a spoken conversation."""
