-- PostgreSQL's version of 002_tags.sql.
ALTER TABLE todos ADD COLUMN tags JSONB NOT NULL DEFAULT '[]';
CREATE INDEX todos_done ON todos (done);
