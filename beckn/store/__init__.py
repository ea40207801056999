"""Storage: engines and migrations (`beckn.store.db`) and the core tables (`beckn.store.tables`).

Kept import-free so that `import beckn.store.tables` does not pull in Alembic.
"""
