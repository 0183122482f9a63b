"""Shared fixtures live in their own modules; register them here."""

pytest_plugins = ["tests.dbfixtures", "tests.botapi"]
