"""Database access: URLs, the embedded PostgreSQL, engines, schema management and tables."""
