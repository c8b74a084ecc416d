"""Shared pytest configuration: fixture plugins for the local stack."""

pytest_plugins = [
    "tests.fixtures.emulator",
    "tests.fixtures.local_sts",
    "tests.fixtures.postgres",
]
