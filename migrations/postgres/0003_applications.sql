-- Applications (domande / pratiche): drafts, submission with the numero di pratica, status history,
-- requests for more documents, the citizen's rating. Keep in step with the other backend's file.

CREATE TABLE applications (
    id TEXT PRIMARY KEY,                 -- random, used in addresses
    ente_code TEXT NOT NULL REFERENCES enti(code),
    service_code TEXT NOT NULL,
    form_version INTEGER NOT NULL,
    applicant_cf TEXT NOT NULL,
    status TEXT NOT NULL,
    answers TEXT NOT NULL,               -- JSON; the draft's, frozen at submission
    current_step INTEGER NOT NULL DEFAULT 1,
    consent_at BIGINT NOT NULL,
    numero_year INTEGER,
    numero_seq INTEGER,
    numero TEXT,                         -- "2026/000123"
    submitted_at BIGINT,
    snapshot TEXT,                       -- JSON: answers, form, declarations, as sent; never changed
    verification_code TEXT UNIQUE,
    due_date TEXT,                       -- latest date for the outcome (YYYY-MM-DD)
    taken_in_charge_at BIGINT,
    protocollo TEXT,
    rating INTEGER,
    rating_detail TEXT,
    rating_comment TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (ente_code, numero_year, numero_seq)
);
CREATE INDEX applications_applicant ON applications (applicant_cf, updated_at);
CREATE INDEX applications_ente_status ON applications (ente_code, status);

CREATE TABLE application_counters (
    ente_code TEXT NOT NULL,
    year INTEGER NOT NULL,
    last INTEGER NOT NULL,
    PRIMARY KEY (ente_code, year)
);

CREATE TABLE application_history (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications(id),
    from_status TEXT,
    to_status TEXT NOT NULL,
    at BIGINT NOT NULL,
    actor_kind TEXT NOT NULL CHECK (actor_kind IN ('cittadino', 'operatore', 'csi', 'sistema')),
    actor_cf TEXT,
    reason TEXT
);
CREATE INDEX application_history_app ON application_history (application_id, id);

CREATE TABLE application_requests (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications(id),
    message TEXT NOT NULL,
    deadline TEXT NOT NULL,              -- YYYY-MM-DD, last day to answer
    requested_at BIGINT NOT NULL,
    requested_by TEXT,
    answered_at BIGINT,
    answer TEXT
);
CREATE INDEX application_requests_app ON application_requests (application_id, id);
