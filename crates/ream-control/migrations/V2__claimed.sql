-- When a run last started on an instance (claimed from the queue, or a download begun):
-- the queue serves first the actor served least since a run of theirs began waiting.
ALTER TABLE runs ADD COLUMN claimed_ms BIGINT;
CREATE INDEX runs_by_actor_claimed ON runs (actor, claimed_ms);
