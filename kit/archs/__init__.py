"""archs."""
