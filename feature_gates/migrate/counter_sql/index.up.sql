-- feature-gates: no-transaction
{header}
--
-- The counter's index, for the lookups that read it by its leading columns.
-- Built after the backfill, so that the backfill's writes do not maintain it,
-- and concurrently: writes go on while it is built. An index of that name the
-- table already has serves as it is if it leads with those columns; any other
-- relation of the name stops the build (IF NOT EXISTS would take it for this
-- one).
SELECT feature_gates_counter_check_index({counter});

CREATE INDEX CONCURRENTLY IF NOT EXISTS {index}
    ON {table} ({index_columns});
