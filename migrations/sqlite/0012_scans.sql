-- The pictures of a scanned PDF's pages (a PDF without a text layer), taken out at inspection and
-- kept encrypted like the documents (their own key, wrapped for "<document id>/pagina-<n>"), for
-- the OCR job to read. Keep in step with ../postgres/0012_scans.sql.

CREATE TABLE document_scans (
    document_id TEXT NOT NULL REFERENCES documents(id),
    page INTEGER NOT NULL,
    storage_id TEXT NOT NULL,
    wrapped_key BLOB NOT NULL,
    PRIMARY KEY (document_id, page)
);
