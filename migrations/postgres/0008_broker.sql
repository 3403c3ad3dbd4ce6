-- The hand-off through RabbitMQ: one process at a time relays the outbox (so that the events of a
-- pratica keep their order), holding this lease and renewing it; another takes over once it lapses.
-- Keep in step with ../sqlite/0008_broker.sql.

CREATE TABLE relay_leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    lease_until BIGINT NOT NULL
);

-- The HTTP feed reads by id, but ids are taken before commit: an event whose transaction is still
-- open may get a smaller id than one already visible. The feed therefore serves only events whose
-- transaction is older than every transaction still open (SQLite commits one at a time, so its
-- ids are already in commit order).
ALTER TABLE outbox ADD COLUMN txid BIGINT DEFAULT (pg_current_xact_id()::text::bigint);
