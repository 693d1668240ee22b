"""Alembic migrations of the interestd schema (applied by `interestd db upgrade`)."""
