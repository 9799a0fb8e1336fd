"""What the harness keeps in PostgreSQL (tables documented in docs/tables.md) and on disk (result.json)."""
