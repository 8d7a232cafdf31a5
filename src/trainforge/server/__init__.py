"""The HTTP server: app factory, routes, auth, error mapping."""
