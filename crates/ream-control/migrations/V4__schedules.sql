-- Schedules: what to run and deliver, when, and as whom (the owner's actor, as created).
-- checked_ms is where the scheduler's last look ended: fires after it are still to come.
CREATE TABLE schedules (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    actor TEXT NOT NULL,
    body TEXT NOT NULL,
    enabled BIGINT NOT NULL,
    checked_ms BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE INDEX schedules_by_owner ON schedules (owner, created_ms);

-- One row per fire, whichever instance made it: the key is what makes a fire happen once.
-- A fire refused before it ran (its owner lost the report) has no run, and says why.
CREATE TABLE fires (
    schedule_id TEXT NOT NULL,
    fire_ms BIGINT NOT NULL,
    run_id TEXT,
    error TEXT,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (schedule_id, fire_ms)
);

ALTER TABLE runs ADD COLUMN schedule_id TEXT;
ALTER TABLE runs ADD COLUMN fire_ms BIGINT;
CREATE INDEX runs_by_schedule ON runs (schedule_id, fire_ms);

-- What a scheduled run sends once it has succeeded, one row per target: claimed under a
-- lease like a run, retried with backoff without running the query again. A burst run's
-- delivery counts the bursts sent in `done`: a retry goes on from the next.
CREATE TABLE deliveries (
    run_id TEXT NOT NULL,
    position BIGINT NOT NULL,
    target TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    error TEXT,
    next_ms BIGINT NOT NULL,
    instance TEXT,
    lease_until BIGINT,
    updated_ms BIGINT NOT NULL,
    done BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, position)
);
CREATE INDEX deliveries_by_status ON deliveries (status, next_ms);
