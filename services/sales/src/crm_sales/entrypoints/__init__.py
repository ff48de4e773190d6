"""The HTTP API of the sales service."""
