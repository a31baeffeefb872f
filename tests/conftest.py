"""Shared by every suite: the fixtures of tests/support (Docker client, task image), and pytest's
own ``pytester`` (the tests of tests/support run pytest on small test files)."""

pytest_plugins = ["tests.support.fixtures", "pytester"]
