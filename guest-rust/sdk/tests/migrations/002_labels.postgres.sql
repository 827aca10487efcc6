-- PostgreSQL only: SQLite has no JSONB, so the native runner must skip it.
ALTER TABLE todos ADD COLUMN labels JSONB NOT NULL DEFAULT '[]'::jsonb;
