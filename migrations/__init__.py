"""Alembic migrations of the Whistle schema (run them with `whistle migrate`)."""
