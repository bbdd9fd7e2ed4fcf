-- Each index's state, durable (docs/state.md): Redis only caches it.
-- Every index recorded before is pending: the first reconcile pass queues
-- it, and the workers record it done (an older fibstack kept its result in
-- Redis only, under keys this version no longer reads).
ALTER TABLE indexes
    ADD COLUMN status      text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
    -- The RQ job queued for its last attempt (contract.new_job_id): the
    -- reconcile pass asks RQ whether that job is still live.
    ADD COLUMN job         text,
    -- When its last attempt was queued; how many jobs were queued for it.
    ADD COLUMN queued_at   timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN attempts    integer NOT NULL DEFAULT 1 CHECK (attempts >= 0),
    -- Done: the result, as in contract.done_fields. value only up to
    -- contract.SHORT_VALUE_MAX_DIGITS; a longer one lives in Redis's cache
    -- and is computed again when it is not there.
    ADD COLUMN digits      integer CHECK (digits > 0),
    ADD COLUMN head        text,
    ADD COLUMN tail        text,
    ADD COLUMN value       text,
    ADD COLUMN compute_ms  double precision,
    -- Failed: why.
    ADD COLUMN error       text,
    -- When the worker recorded it done or failed.
    ADD COLUMN computed_at timestamptz,
    ADD CONSTRAINT indexes_done_has_result CHECK (status <> 'done' OR (digits IS NOT NULL AND head IS NOT NULL));
-- The reconcile pass walks the pending indexes by number: few, whatever
-- the table's size.
CREATE INDEX indexes_pending ON indexes (number) WHERE status = 'pending';
