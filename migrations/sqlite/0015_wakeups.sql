-- Wake-ups: on PostgreSQL a trigger tells the other processes at commit that outbox rows or jobs
-- were added. SQLite serves one process, whose writers say so themselves after their commit
-- (`db::wake`): nothing to add to the schema; this keeps the two folders' versions in step.
SELECT 1;
