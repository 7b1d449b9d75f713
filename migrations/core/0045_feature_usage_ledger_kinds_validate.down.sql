-- Nothing to undo: validating a constraint changes no data. No data is lost.
SELECT 1;
