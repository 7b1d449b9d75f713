-- Last: until the record is gone, running this rollback again gives back the
-- same; after, it does nothing.
SELECT feature_gates_counter_release({counter});
