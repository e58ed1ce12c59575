-- Added only when the image is built with MIGRATION_FAIL=1. The first statement works, the second
-- fails: the whole migration is rolled back (no `weight` column), 001 and 002 stay applied.
ALTER TABLE widgets ADD COLUMN weight integer;
SELECT count(*) FROM table_that_does_not_exist;
