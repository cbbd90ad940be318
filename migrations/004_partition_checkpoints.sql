-- Parallel apply (parallel_apply > 1): a large batch's statements are spread over several
-- sessions by a hash of each row's key. Partition 0 commits with the checkpoint; each
-- other partition commits first, with its row here: "partition `partition` of
-- `partitions` has applied its share of every entry of `stream` up to `last_id`". If the
-- process dies before the checkpoint commits, the batch is read again and that share is
-- not applied twice. A row at or behind the read model's checkpoint says nothing more.
CREATE TABLE :"schema".partition_checkpoints (
    readmodel  text NOT NULL,
    stream     text NOT NULL,
    partition  integer NOT NULL,
    partitions integer NOT NULL,
    last_id    text NOT NULL,
    last_ms    bigint NOT NULL,
    last_seq   bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (readmodel, stream, partition)
);
