-- Appointments with the segretariato sociale: offices (sedi) and their closures, topics (motivi),
-- calendars with their hours, operators and topics, slots with the places taken (the CHECK is what
-- makes overbooking impossible), appointments, the waiting list, the scheda di accesso.
-- Keep in step with ../sqlite/0004_appointments.sql.

CREATE TABLE offices (
    id TEXT PRIMARY KEY,
    ente_code TEXT NOT NULL REFERENCES enti(code),
    name TEXT NOT NULL,
    address TEXT NOT NULL,
    comune TEXT NOT NULL,
    patron_day TEXT,                     -- MM-DD: the comune's patron saint, a holiday there
    opening_hours TEXT NOT NULL,         -- as told to citizens
    accessibility TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE office_closures (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    office_id TEXT NOT NULL REFERENCES offices(id),
    from_date TEXT NOT NULL,             -- YYYY-MM-DD, both included
    to_date TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX office_closures_office ON office_closures (office_id, to_date);

CREATE TABLE topics (
    id TEXT PRIMARY KEY,
    ente_code TEXT NOT NULL REFERENCES enti(code),
    title TEXT NOT NULL,
    service_code TEXT                    -- the service whose page offers this topic
);

CREATE TABLE calendars (
    id TEXT PRIMARY KEY,
    office_id TEXT NOT NULL REFERENCES offices(id),
    name TEXT NOT NULL,
    hours TEXT NOT NULL,                 -- JSON: seven strings, Monday first ("09:00-12:30, 14:30-16:30")
    slot_minutes INTEGER NOT NULL CHECK (slot_minutes BETWEEN 5 AND 240),
    places INTEGER NOT NULL CHECK (places BETWEEN 1 AND 100),
    min_notice_minutes INTEGER NOT NULL CHECK (min_notice_minutes >= 0),
    max_days INTEGER NOT NULL CHECK (max_days BETWEEN 1 AND 365),
    cancel_minutes INTEGER NOT NULL CHECK (cancel_minutes >= 0),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX calendars_office ON calendars (office_id);

CREATE TABLE calendar_operators (
    calendar_id TEXT NOT NULL REFERENCES calendars(id),
    cf TEXT NOT NULL,
    PRIMARY KEY (calendar_id, cf)
);

CREATE TABLE calendar_topics (
    calendar_id TEXT NOT NULL REFERENCES calendars(id),
    topic_id TEXT NOT NULL REFERENCES topics(id),
    PRIMARY KEY (calendar_id, topic_id)
);

CREATE TABLE slots (
    calendar_id TEXT NOT NULL REFERENCES calendars(id),
    starts_at BIGINT NOT NULL,
    capacity INTEGER NOT NULL,
    taken INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (calendar_id, starts_at),
    CHECK (taken >= 0 AND taken <= capacity)
);

CREATE TABLE waiting_list (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,             -- also the order of arrival
    office_id TEXT NOT NULL REFERENCES offices(id),
    topic_id TEXT NOT NULL REFERENCES topics(id),
    citizen_cf TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('in_attesa', 'offerto', 'prenotato', 'ritirato', 'scaduto')),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX waiting_list_office ON waiting_list (office_id, status, created_at);
CREATE INDEX waiting_list_citizen ON waiting_list (citizen_cf, status);

CREATE TABLE appointments (
    id TEXT PRIMARY KEY,
    calendar_id TEXT NOT NULL,
    starts_at BIGINT NOT NULL,
    ends_at BIGINT NOT NULL,
    citizen_cf TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('trattenuto', 'prenotato', 'annullato', 'scaduto', 'spostato', 'presentato', 'assente')),
    hold_until BIGINT,                   -- while 'trattenuto': the place is kept until then
    waiting_id BIGINT REFERENCES waiting_list(id), -- the place was offered from the waiting list
    topic_id TEXT REFERENCES topics(id),
    reason TEXT,
    email TEXT,
    phone TEXT,
    created_at BIGINT NOT NULL,
    booked_at BIGINT,
    ended_at BIGINT,                     -- cancelled, expired, moved, attended or missed
    updated_at BIGINT NOT NULL,
    FOREIGN KEY (calendar_id, starts_at) REFERENCES slots(calendar_id, starts_at)
);
CREATE INDEX appointments_citizen ON appointments (citizen_cf, starts_at);
CREATE INDEX appointments_slot ON appointments (calendar_id, starts_at, status);
CREATE INDEX appointments_hold ON appointments (status, hold_until);

CREATE TABLE access_records (
    appointment_id TEXT PRIMARY KEY REFERENCES appointments(id),
    need TEXT NOT NULL,
    area TEXT NOT NULL,
    outcome TEXT NOT NULL,
    notes TEXT,
    recorded_by TEXT NOT NULL,
    recorded_at BIGINT NOT NULL
);
