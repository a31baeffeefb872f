"""Shared by every suite: the fixtures of tests/support (Docker client, task image), and pytest's
own ``pytester`` (the tests of tests/support run pytest on small test files), and the background
bring-up of the convergence suite's cluster (tests/support/cluster_warmup.py)."""

pytest_plugins = ["tests.support.fixtures", "tests.support.cluster_warmup", "pytester"]
