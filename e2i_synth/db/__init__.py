"""Everything that talks to PostgreSQL: connection, embedded server, migrations, COPY, IO manager.

Nothing outside this package opens a connection.
"""
