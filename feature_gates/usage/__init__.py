"""Usage metering: the SQL the runtime sends, and the non-blocking tracker."""
