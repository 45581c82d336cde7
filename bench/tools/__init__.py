"""Tool-call benchmarks: the tool requests as text through the LLM service (and, to come, spoken)."""
