-- Documents uploaded for a pratica: the original name only as a label, the type decided by the
-- content, size and SHA-256 of the file as uploaded, the state shown to the citizen, and where the
-- encrypted copy is (a random id) with its key wrapped by the master key.
-- Keep in step with ../postgres/0009_documents.sql.

CREATE TABLE documents (
    id TEXT PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications(id),
    owner_cf TEXT NOT NULL,
    slot TEXT NOT NULL,                  -- the form's attachment field
    label TEXT NOT NULL,                 -- the file's name as given, cleaned; never a path
    kind TEXT,                           -- pdf, jpeg, png (from the content)
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('in_verifica', 'accettato', 'rifiutato')),
    reason TEXT,                         -- why it was refused, as the citizen reads it
    pages INTEGER,
    storage_id TEXT,
    wrapped_key BLOB,
    created_at BIGINT NOT NULL,
    removed_at BIGINT
);
CREATE INDEX documents_application ON documents (application_id, slot);
CREATE INDEX documents_owner ON documents (owner_cf);
