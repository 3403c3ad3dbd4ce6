-- The CSI hand-off over HTTP (the embedded default, without a broker): the ente of each outbox
-- event (a CSI sees only the enti it serves), the CSI's access tokens (client credentials), how far
-- each CSI client acknowledged the feed, and the events the CSI sent, each applied at most once
-- (or refused, with its reason: the dead letters). Keep in step with ../sqlite/0007_csi.sql.

ALTER TABLE outbox ADD COLUMN ente_code TEXT;
CREATE INDEX outbox_feed ON outbox (ente_code, id);

CREATE TABLE csi_tokens (
    token_hash TEXT PRIMARY KEY,         -- SHA-256 of the bearer token
    client_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE csi_cursors (
    client_id TEXT PRIMARY KEY,
    acknowledged BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE inbound_events (
    event_id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('applicato', 'rifiutato')),
    reason TEXT,
    payload TEXT NOT NULL
);
