"""Talking to the register: the HTTP client, the vaccine catalog and reading its answers."""
