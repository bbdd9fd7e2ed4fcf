-- The schema before index states lived in Postgres (fibstack up to #30).
-- IF NOT EXISTS: a database an older fibstack made has these already, and
-- is then simply at version 1.
CREATE TABLE IF NOT EXISTS submissions (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    number       integer NOT NULL CHECK (number >= 0),
    submitted_at timestamptz NOT NULL DEFAULT now()
);
-- One row per distinct index: what "Calculated values" lists, without
-- scanning every submission.
CREATE TABLE IF NOT EXISTS indexes (
    number             integer PRIMARY KEY CHECK (number >= 0),
    first_submitted_at timestamptz NOT NULL DEFAULT now(),
    last_submitted_at  timestamptz NOT NULL DEFAULT now(),
    submissions        bigint NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS indexes_last_submitted_at ON indexes (last_submitted_at DESC);
