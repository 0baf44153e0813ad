"""The two homes of state: records (SQLite or PostgreSQL) and hot counters (memory or Redis)."""
