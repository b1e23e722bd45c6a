-- The result cache: a download's output in the output store, by its flight key (report,
-- parameters, format, encoding and the claims the spec reads), fresh until expires_ms.
CREATE TABLE cache (
    key TEXT PRIMARY KEY,
    report TEXT NOT NULL,
    name TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);
CREATE INDEX cache_by_created ON cache (created_ms);
