"""Serving on a node: one endpoint instance or one batch-transform instance per supervisor (reference §7.3)."""
