"""Asset checks: run in PostgreSQL against the loaded tables, after each load."""
