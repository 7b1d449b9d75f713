-- Exactly-once writes: idempotency keys of single uses, and the batches of the
-- background writer.
--
-- A key is recorded in the same transaction as the increment it guards, so an
-- increment retried with its key (a job run twice, a batch sent again after
-- its connection died) is counted once. Keys are kept until
-- prune_feature_usage_idempotency() removes them (cron: once a day).

-- One row per (user, feature, key): the same key may guard one use of each
-- feature (a job that sends an email and a text message counts both).
CREATE TABLE IF NOT EXISTS feature_usage_idempotency (
    user_id         feature_usage_user_id NOT NULL,
    feature         text        NOT NULL,
    idempotency_key text        NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT feature_usage_idempotency_pkey PRIMARY KEY (user_id, feature, idempotency_key),
    CONSTRAINT feature_usage_idempotency_key_length
        CHECK (length(idempotency_key) BETWEEN 1 AND 255)
);

-- The pruning job's scan.
CREATE INDEX IF NOT EXISTS idx_feature_usage_idempotency_recorded_at
    ON feature_usage_idempotency (recorded_at);

-- One row per batch the background writer sent. applied is true when the
-- batch was written, false when resolve_feature_usage_batch() found it was
-- not and made sure it never will be. The writer deletes the rows of batches
-- it saw committed; the rest (a batch whose reply was lost, a process that
-- exited) wait for prune_feature_usage_idempotency().
CREATE TABLE IF NOT EXISTS feature_usage_batches (
    batch_id    uuid        PRIMARY KEY,
    applied     boolean     NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

-- Settles a batch whose outcome the writer does not know (its connection died
-- before the reply came): returns true if it was written, false if it was not,
-- and then records it as not applied, so that the batch, if it is still on
-- its way, finds its id taken and writes nothing. Either answer is final: the
-- writer may then send its increments again under a new id.
CREATE OR REPLACE FUNCTION resolve_feature_usage_batch(p_batch_id uuid)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
BEGIN
    IF p_batch_id IS NULL THEN
        RAISE EXCEPTION 'batch_id must not be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Waits for a transaction still writing this batch, then sees its outcome.
    INSERT INTO feature_usage_batches (batch_id, applied) VALUES (p_batch_id, false)
    ON CONFLICT (batch_id) DO NOTHING;
    RETURN (SELECT applied FROM feature_usage_batches WHERE batch_id = p_batch_id);
END
$$;

-- Deletes idempotency keys and batch records older than p_keep_days days and
-- returns how many rows went. Within that time a key is counted once; after
-- it, the same key counts again. Run it daily, for example from cron with
-- `feature-gates prune --keep-days 30`.
CREATE OR REPLACE FUNCTION prune_feature_usage_idempotency(p_keep_days integer DEFAULT 30)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
DECLARE
    v_cutoff timestamptz;
    v_keys bigint;
    v_batches bigint;
BEGIN
    IF p_keep_days IS NULL OR p_keep_days NOT BETWEEN 1 AND 365000 THEN
        RAISE EXCEPTION 'keep_days must be between 1 and 365000, got %', coalesce(p_keep_days::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_cutoff := now() - make_interval(days => p_keep_days);
    DELETE FROM feature_usage_idempotency WHERE recorded_at < v_cutoff;
    GET DIAGNOSTICS v_keys = ROW_COUNT;
    DELETE FROM feature_usage_batches WHERE recorded_at < v_cutoff;
    GET DIAGNOSTICS v_batches = ROW_COUNT;
    RETURN v_keys + v_batches;
END
$$;
