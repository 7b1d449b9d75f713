-- feature-gates: no-transaction
-- Drops the counter {counter_text}.
-- Its trigger and its function go, and the column when this set added it (its
-- values are lost; migrate computes them again). A column the application had
-- stays, with its values as the trigger left them, its own default and NULLs
-- allowed again if they were. The rows of the table and every other column are
-- kept.
DROP TRIGGER IF EXISTS {trigger} ON {table};
DROP FUNCTION IF EXISTS {function}();
