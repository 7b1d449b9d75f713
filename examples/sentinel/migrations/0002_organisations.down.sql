-- Drops the organisations and the users' organisation, subscription start and
-- time zone: members no longer share a pool, briefings renew on the 1st.
ALTER TABLE users
    DROP COLUMN IF EXISTS timezone,
    DROP COLUMN IF EXISTS subscribed_at,
    DROP COLUMN IF EXISTS org_id;
DROP TABLE IF EXISTS organisations;
