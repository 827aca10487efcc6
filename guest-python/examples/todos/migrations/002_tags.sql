-- A todo's tags, as a JSON list; and the open ones found by index.
ALTER TABLE todos ADD COLUMN tags JSON NOT NULL DEFAULT '[]';
CREATE INDEX todos_done ON todos (done);
