-- Front-office triage: who a pratica is assigned to, the area of need it was classified in, the
-- staff's own log of a pratica (assignments, classification, forwarding to the CSI, internal notes),
-- never shown to the citizen, and the messages between the citizen and the office about a pratica. Keep in step with ../postgres/0006_triage.sql.

ALTER TABLE applications ADD COLUMN assigned_to TEXT;
ALTER TABLE applications ADD COLUMN need_area TEXT;
-- The queue: counts by ente and status; pages by due date or by date sent.
CREATE INDEX applications_queue ON applications (ente_code, status, due_date);
CREATE INDEX applications_queue_due ON applications (ente_code, due_date, id);
CREATE INDEX applications_queue_sent ON applications (ente_code, submitted_at, id);

CREATE TABLE staff_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    application_id TEXT NOT NULL REFERENCES applications(id),
    at BIGINT NOT NULL,
    actor_cf TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('assegnazione', 'classificazione', 'inoltro', 'nota')),
    text TEXT NOT NULL
);
CREATE INDEX staff_log_application ON staff_log (application_id, id);

CREATE TABLE pratica_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    application_id TEXT NOT NULL REFERENCES applications(id),
    at BIGINT NOT NULL,
    author_cf TEXT NOT NULL,
    from_office SMALLINT NOT NULL,        -- 1: the office wrote it; 0: the citizen
    text TEXT NOT NULL,
    handled_at BIGINT                     -- a citizen's message: when the office answered it
);
CREATE INDEX pratica_messages_application ON pratica_messages (application_id, id);
