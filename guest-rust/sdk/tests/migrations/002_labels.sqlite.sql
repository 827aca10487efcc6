-- SQLite's version of 002_labels.sql, which it replaces natively.
ALTER TABLE todos ADD COLUMN labels TEXT NOT NULL DEFAULT '["sqlite"]';
