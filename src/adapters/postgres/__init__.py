"""PostgreSQL adapters: SQL run on the backend database with psycopg 3."""
