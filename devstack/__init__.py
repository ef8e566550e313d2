"""Local stand-ins for Azure parts; dev tooling, never deployed."""
