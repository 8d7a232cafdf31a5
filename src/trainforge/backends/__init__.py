"""Backends that run jobs: local processes, later a Ray cluster."""
