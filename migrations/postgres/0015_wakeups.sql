-- Wake-ups: at commit, a row added to the outbox or to the jobs tells every Sportello process
-- listening (`LISTEN sportello_outbox`, `LISTEN sportello_jobs`), so that the relay and the job
-- runners look at once instead of at their next poll. One notification per statement (for the
-- jobs, one per kind added, so that only that kind's runners look); PostgreSQL folds identical
-- ones of a transaction into one.
CREATE FUNCTION sportello_wake() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify(TG_ARGV[0], '');
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER outbox_wakes AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION sportello_wake('sportello_outbox');


CREATE FUNCTION sportello_wake_jobs() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('sportello_jobs', k.kind) FROM (SELECT DISTINCT kind FROM added) k;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER jobs_wake AFTER INSERT ON jobs REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION sportello_wake_jobs();
