-- Where a checkpoint stands in its stream as Redis counts entries (the group's
-- entries-read after the checkpoint's entry, Redis 7). Comparing it with the position
-- Redis reports for the next entry delivered shows entries removed (trimmed or deleted)
-- before the read model read them. NULL when unknown.
ALTER TABLE :"schema".checkpoints ADD COLUMN entries_read bigint;
