-- Who may act for whom: delegations made online by the person (proposed, then accepted by the
-- delegate) or recorded by an operator from a paper form, and legal representation (a parent for a
-- minor, a tutore or amministratore di sostegno) recorded by an operator with the supporting
-- document. Scopes are a comma-separated list (stato, integrazioni, domande, appuntamenti); the
-- last day of validity is a date in Europe/Rome. Keep in step with ../postgres/0010_delegations.sql.

CREATE TABLE mandates (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('delega', 'genitore', 'tutore', 'amministratore_sostegno')),
    origin TEXT NOT NULL CHECK (origin IN ('online', 'ufficio')),
    principal_cf TEXT NOT NULL,          -- the person represented (delegante, minore, beneficiario)
    principal_given TEXT NOT NULL,
    principal_family TEXT NOT NULL,
    agent_cf TEXT NOT NULL,              -- the delegate or the representative
    agent_given TEXT NOT NULL,
    agent_family TEXT NOT NULL,
    scopes TEXT NOT NULL,
    valid_until TEXT NOT NULL,           -- YYYY-MM-DD, the last day it can be used
    status TEXT NOT NULL CHECK (status IN ('proposta', 'attiva', 'rifiutata', 'revocata')),
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,            -- codice fiscale of who made or recorded it
    accepted_at BIGINT,
    ended_at BIGINT,
    ended_by TEXT,
    document TEXT,                       -- the supporting document checked by the operator
    ente_code TEXT                       -- the ente of the operator who recorded it
);
CREATE INDEX mandates_agent ON mandates (agent_cf, status);
CREATE INDEX mandates_principal ON mandates (principal_cf, status);

-- Who sent an application for its applicant (a delegate or a legal representative).
ALTER TABLE applications ADD COLUMN delegate_cf TEXT;
