-- feature-gates: no-transaction
-- Drops the index {index_text} of {counter_text}.
-- This set built it; it goes without blocking writes. An index of that name the
-- application had before is kept. No data is lost.
SELECT feature_gates_counter_index_to_drop({counter}, {drop_name});

-- DROP INDEX CONCURRENTLY cannot be conditional: the statement above renamed
-- the index to drop out of the way (SHARE UPDATE EXCLUSIVE: writes go on).
DROP INDEX CONCURRENTLY IF EXISTS {drop_index};
