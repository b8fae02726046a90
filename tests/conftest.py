"""Suite-wide pytest configuration: the harness plugins every test may use."""

pytest_plugins = [
    "tests.harness.postgres",
    "tests.harness.tansu",
]
