-- The hand-off through RabbitMQ: one process at a time relays the outbox (so that the events of a
-- pratica keep their order), holding this lease and renewing it; another takes over once it lapses.
-- Keep in step with ../sqlite/0008_broker.sql.

CREATE TABLE relay_leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    lease_until BIGINT NOT NULL
);

