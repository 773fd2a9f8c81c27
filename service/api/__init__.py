"""The HTTP layer: app factory, error mapping, dependencies."""
