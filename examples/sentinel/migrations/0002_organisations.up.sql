-- feature-gates: no-transaction
-- Organisations, and what a user's limits count from: the organisation a user
-- belongs to (its pool of custom reports, with a share per member), when the
-- user's subscription started (briefings renew on that day each month) and
-- the user's time zone (daily limits end at the user's midnight).
-- feature-gates counts organisations under ids of the type of user ids
-- (bigint here), so organisations.id is a bigint too.
CREATE TABLE IF NOT EXISTS organisations (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text        NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Catalog-only: the columns are NULL (no organisation, no subscription yet,
-- the application's zone) until set.
ALTER TABLE users
    ADD COLUMN IF NOT EXISTS org_id bigint,
    ADD COLUMN IF NOT EXISTS subscribed_at timestamptz,
    ADD COLUMN IF NOT EXISTS timezone text;

-- NOT VALID, then validated in a transaction of its own: the check of existing
-- rows (all NULL) runs under a lock that lets writes go on. A constraint has no
-- IF NOT EXISTS: the block adds it once.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conrelid = 'users'::regclass AND conname = 'users_org_id_fkey') THEN
        ALTER TABLE users ADD CONSTRAINT users_org_id_fkey
            FOREIGN KEY (org_id) REFERENCES organisations (id) ON DELETE SET NULL NOT VALID;
    END IF;
END
$$;

ALTER TABLE users VALIDATE CONSTRAINT users_org_id_fkey;
