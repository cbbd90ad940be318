-- The bookkeeping schema: read-model registry, checkpoints, dead letters.
-- :"schema" stands for the configured schema (postgres.schema), quoted; psql users can run
-- this file with: psql -v schema=projector -f migrations/001_bookkeeping.sql

-- One row per read model the daemon has run: its table and the fingerprint of its YAML,
-- so a changed definition is noticed at start.
CREATE TABLE :"schema".readmodels (
    name          text PRIMARY KEY,
    table_name    text NOT NULL,
    source_file   text,
    fingerprint   text NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- The last entry each read model has settled (applied, skipped or dead-lettered) on each
-- stream. Written in the same transaction as the batch it covers; never moves back.
CREATE TABLE :"schema".checkpoints (
    readmodel     text NOT NULL,
    stream        text NOT NULL,
    last_id       text NOT NULL,
    last_ms       bigint NOT NULL,
    last_seq      bigint NOT NULL,
    applied_total bigint NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (readmodel, stream)
);

-- Events that could not be applied, with the raw entry and why.
CREATE TABLE :"schema".dead_letters (
    id              bigserial PRIMARY KEY,
    readmodel       text NOT NULL,
    stream          text NOT NULL,
    entry_id        text NOT NULL,
    entry_ms        bigint NOT NULL,
    entry_seq       bigint NOT NULL,
    event_type      text,
    raw             jsonb NOT NULL,
    error           text NOT NULL,
    sqlstate        text,
    attempts        integer NOT NULL DEFAULT 1,
    first_failed_at timestamptz NOT NULL DEFAULT now(),
    last_failed_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (readmodel, stream, entry_id)
);
CREATE INDEX dead_letters_readmodel_idx ON :"schema".dead_letters (readmodel, stream, entry_ms, entry_seq);

-- Has read model p_readmodel settled entry p_entry_id of stream p_stream? True once the
-- entry is at or below the checkpoint (applied, skipped as unhandled, or dead-lettered:
-- see dead_letters for the last). Raises invalid_parameter_value for a malformed ID.
CREATE FUNCTION :"schema".has_applied(p_readmodel text, p_stream text, p_entry_id text)
RETURNS boolean
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    v_ms  bigint;
    v_seq bigint;
BEGIN
    IF p_entry_id IS NULL OR p_entry_id !~ '^[0-9]{1,19}-[0-9]{1,19}$' THEN
        RAISE EXCEPTION 'invalid entry ID "%": expected <ms>-<seq>', p_entry_id
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_ms := split_part(p_entry_id, '-', 1)::bigint;
    v_seq := split_part(p_entry_id, '-', 2)::bigint;
    RETURN EXISTS (
        SELECT 1 FROM :"schema".checkpoints c
        WHERE c.readmodel = p_readmodel AND c.stream = p_stream
          AND (c.last_ms, c.last_seq) >= (v_ms, v_seq));
END
$$;
