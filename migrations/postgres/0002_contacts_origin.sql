-- Whether the citizen changed a contact in the portal: if so, later logins keep it; if not, the
-- identity provider's value (kept up to date at each login) is used.
ALTER TABLE people ADD COLUMN email_set_by_citizen SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE people ADD COLUMN phone_set_by_citizen SMALLINT NOT NULL DEFAULT 0;
