"""Alembic migrations of the service database (``medlens.serve.database.migrate`` runs them)."""
