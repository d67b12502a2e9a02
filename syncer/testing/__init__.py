"""Test doubles and process harnesses, shipped as public code (like structlog.testing).

They drive *real* programs: an nginx started with its own prefix on loopback ports,
HTTP backends, and deadline-based polling instead of sleeps. The test suite and the
benchmark both use them.
"""
