"""Helpers shared by the tests: real services started on 127.0.0.1 and polling with deadlines."""
