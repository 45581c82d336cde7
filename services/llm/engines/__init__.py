"""Chat backends, one module each, imported lazily by ``create_engine``."""
