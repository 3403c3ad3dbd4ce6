-- Messages and alerts: the inbox of the area personale (one message per alert, whatever the
-- retries), the kinds of alert a person does not want by e-mail, and the one-use tokens of the
-- e-mails (confirming a new address, unsubscribing from a kind). Keep in step with
-- ../postgres/0005_messages.sql.

CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_key TEXT NOT NULL UNIQUE,
    cf TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    link TEXT,                           -- the page it is about (a pratica, an appointment)
    created_at BIGINT NOT NULL,
    read_at BIGINT,
    emailed_at BIGINT
);
CREATE INDEX messages_person ON messages (cf, created_at);

CREATE TABLE email_optouts (
    cf TEXT NOT NULL,
    kind TEXT NOT NULL,
    PRIMARY KEY (cf, kind)
);

CREATE TABLE email_tokens (
    token_hash TEXT PRIMARY KEY,         -- SHA-256 of the token in the link, never the token
    cf TEXT NOT NULL,
    purpose TEXT NOT NULL CHECK (purpose IN ('conferma', 'disiscrizione')),
    kind TEXT,
    email TEXT,
    created_at BIGINT NOT NULL,
    used_at BIGINT
);
