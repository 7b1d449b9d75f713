-- Forgets how far the backfill of {counter_text} got.
-- Its values stay (the rollback of the migration before drops the column, or
-- gives back a column the application had). No data is lost.
SELECT feature_gates_counter_positions_clear({counter});
