-- Every run of every instance: what was asked (to run it again), where it is, and the
-- last snapshot its instance wrote (what GET /runs/{id} shows from any instance).
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    report TEXT NOT NULL,
    format TEXT NOT NULL,
    mode TEXT NOT NULL,
    actor TEXT NOT NULL,
    request TEXT NOT NULL,
    flight_key TEXT,
    source_key TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    instance TEXT,
    attempt BIGINT NOT NULL DEFAULT 0,
    lease_until BIGINT,
    cancel_requested BIGINT NOT NULL DEFAULT 0,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    finished_ms BIGINT,
    snapshot TEXT NOT NULL,
    error_public TEXT,
    output_name TEXT,
    output_bytes BIGINT,
    upload TEXT
);
CREATE INDEX runs_by_status ON runs (status, created_ms);
CREATE INDEX runs_by_actor ON runs (actor, created_ms);
CREATE INDEX runs_by_instance ON runs (instance, status);

-- The outputs ream wrote: retention removes only these.
CREATE TABLE outputs (
    name TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    report TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    created_ms BIGINT NOT NULL
);

-- Values every instance shares (the key that signs download links).
CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
