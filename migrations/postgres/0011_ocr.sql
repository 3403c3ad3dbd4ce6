-- Reading documents: whether a document is being read or was read, the text read (a page) or the
-- standard form recognised with each field read (its value, Tesseract's confidence, what is wrong
-- with it and what the pratica says instead), whether its signature box holds ink, and the
-- citizen's confirmation or correction. Keep in step with ../sqlite/0011_ocr.sql.

ALTER TABLE documents ADD COLUMN ocr_status TEXT;   -- NULL: nothing to read; in_lettura, letto, illeggibile
ALTER TABLE documents ADD COLUMN ocr_text TEXT;
ALTER TABLE documents ADD COLUMN ocr_confidence INTEGER;
ALTER TABLE documents ADD COLUMN form_code TEXT;
ALTER TABLE documents ADD COLUMN signed INTEGER;    -- 1 ink in the signature box, 0 none

CREATE TABLE document_fields (
    document_id TEXT NOT NULL REFERENCES documents(id),
    position INTEGER NOT NULL,
    field TEXT NOT NULL,
    label TEXT NOT NULL,
    value TEXT NOT NULL,
    confidence INTEGER NOT NULL,
    problem TEXT,
    expected TEXT,
    corrected TEXT,                  -- the citizen's value, when they corrected the reading
    confirmed_at BIGINT,
    PRIMARY KEY (document_id, field)
);
