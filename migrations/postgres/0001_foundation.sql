-- Foundation: enti, people, staff roles, sessions, audit log, jobs, outbox.
-- Times are Unix milliseconds. Keep in step with ../sqlite/0001_foundation.sql.

CREATE TABLE enti (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL
);

CREATE TABLE people (
    cf TEXT PRIMARY KEY,
    given_name TEXT NOT NULL,
    family_name TEXT NOT NULL,
    birth_date TEXT,
    email TEXT,
    phone TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE staff_roles (
    cf TEXT NOT NULL,
    ente_code TEXT NOT NULL REFERENCES enti(code),
    role TEXT NOT NULL CHECK (role IN ('operatore', 'coordinatore', 'amministratore', 'revisore')),
    PRIMARY KEY (cf, ente_code, role)
);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,              -- SHA-256 of the cookie value, never the value itself
    data TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);
CREATE INDEX sessions_last_seen ON sessions (last_seen_at);

CREATE TABLE audit_log (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at BIGINT NOT NULL,
    actor_cf TEXT NOT NULL,
    actor_role TEXT NOT NULL,
    subject_cf TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('read', 'change')),
    object TEXT NOT NULL,
    purpose TEXT NOT NULL,
    request_id TEXT
);
CREATE INDEX audit_log_subject ON audit_log (subject_cf, at);

CREATE TABLE jobs (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done', 'failed')),
    run_at BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 8,
    locked_by TEXT,
    lease_until BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX jobs_due ON jobs (status, run_at);

CREATE TABLE outbox (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    event_type TEXT NOT NULL,
    aggregate_type TEXT NOT NULL,
    aggregate_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    available_at BIGINT NOT NULL,
    locked_by TEXT,
    lease_until BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    sent_at BIGINT
);
CREATE INDEX outbox_pending ON outbox (status, aggregate_type, aggregate_id, id);
