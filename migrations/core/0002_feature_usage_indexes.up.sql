-- feature-gates: no-transaction
-- Built concurrently so that an application's existing table keeps taking
-- writes while the indexes are built. An INVALID index left by a build that
-- failed is dropped and built again by the next migrate.

-- IF NOT EXISTS below would accept any relation of the names: one that is not
-- what it must be (see feature_usage_index_problems in 0001) stops the build.
SELECT feature_usage_check_indexes();

-- A unique index cannot be built over duplicate keys, which an adopted table
-- may have: say which ones before starting the build. Rows with a NULL in the
-- key never collide in a unique index (feature_usage_not_null reports them).
DO $$
DECLARE
    v_count bigint;
    v_examples text;
BEGIN
    SELECT count(*), string_agg(format('(%s, %s, %s) x%s', user_id, feature, period_start, n),
                                ', ') FILTER (WHERE rn <= 5)
    INTO v_count, v_examples
    FROM (SELECT user_id, feature, period_start, count(*) AS n,
                 row_number() OVER (ORDER BY user_id, feature, period_start) AS rn
          FROM feature_usage
          WHERE user_id IS NOT NULL AND feature IS NOT NULL AND period_start IS NOT NULL
          GROUP BY user_id, feature, period_start
          HAVING count(*) > 1) AS d;
    IF v_count > 0 THEN
        RAISE EXCEPTION 'feature_usage has % duplicated (user_id, feature, period_start) keys, '
                        'for example %', v_count, v_examples
            USING ERRCODE = 'unique_violation',
                  HINT = 'merge each into one row (docs/operations.md shows a query), '
                         'then run migrate again';
    END IF;
END
$$;

-- The arbiter of every ON CONFLICT upsert, and the index for (user, feature)
-- lookups.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS idx_feature_usage_user_feature_period
    ON feature_usage (user_id, feature, period_start);

-- Per-period reports (top features, users near a limit) and the archive job.
-- Not partial: a predicate on usage_count would make every counter update a
-- non-HOT update (new entries in every index), and a "recent periods" predicate
-- cannot be written (an index predicate must be immutable); retention keeps the
-- table to recent periods instead. Only never-updated columns are indexed, so the
-- upserts that move usage_count stay HOT.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_feature_usage_period_start
    ON feature_usage (period_start);
