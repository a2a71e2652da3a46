"""Shared fixtures: real services started for the test session (see tests/support/services.py)."""
