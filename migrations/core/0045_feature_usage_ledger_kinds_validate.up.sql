-- Validates the ledger's kinds that 0043 added NOT VALID. VALIDATE CONSTRAINT
-- takes a SHARE UPDATE EXCLUSIVE lock: writes go on while the rows are checked.
ALTER TABLE feature_usage_ledger VALIDATE CONSTRAINT feature_usage_ledger_kind_check;
