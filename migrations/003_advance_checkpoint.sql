-- Moves a checkpoint forward, but only from where the caller found it. Every batch calls
-- this first, in its own transaction: the row lock serialises batches of one read model
-- and stream, and a batch whose expected position is no longer current (another process
-- got there first: a second daemon, or one that outlived a network partition) fails with
-- serialization_failure, so its changes roll back and nothing is applied twice.
CREATE FUNCTION :"schema".advance_checkpoint(
    p_readmodel text, p_stream text, p_expected text, p_last_id text,
    p_applied bigint, p_entries_read bigint)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    v_current text;
    v_ms  bigint := split_part(p_last_id, '-', 1)::bigint;
    v_seq bigint := split_part(p_last_id, '-', 2)::bigint;
BEGIN
    SELECT last_id INTO v_current FROM :"schema".checkpoints
    WHERE readmodel = p_readmodel AND stream = p_stream
    FOR UPDATE;
    IF NOT FOUND THEN
        IF p_expected <> '0-0' THEN
            RAISE EXCEPTION 'checkpoint of read model "%" on stream "%" is missing, expected %',
                p_readmodel, p_stream, p_expected USING ERRCODE = 'serialization_failure';
        END IF;
        INSERT INTO :"schema".checkpoints AS c
            (readmodel, stream, last_id, last_ms, last_seq, applied_total, entries_read)
        VALUES (p_readmodel, p_stream, p_last_id, v_ms, v_seq, p_applied, p_entries_read)
        ON CONFLICT (readmodel, stream) DO NOTHING;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'checkpoint of read model "%" on stream "%" was created concurrently',
                p_readmodel, p_stream USING ERRCODE = 'serialization_failure';
        END IF;
        RETURN;
    END IF;
    IF v_current <> p_expected THEN
        RAISE EXCEPTION 'checkpoint of read model "%" on stream "%" is %, expected %',
            p_readmodel, p_stream, v_current, p_expected USING ERRCODE = 'serialization_failure';
    END IF;
    UPDATE :"schema".checkpoints
    SET last_id = p_last_id, last_ms = v_ms, last_seq = v_seq,
        applied_total = applied_total + p_applied, entries_read = p_entries_read,
        updated_at = now()
    WHERE readmodel = p_readmodel AND stream = p_stream
      AND (last_ms, last_seq) < (v_ms, v_seq);
    IF NOT FOUND THEN
        RAISE EXCEPTION 'checkpoint of read model "%" on stream "%" cannot move back from % to %',
            p_readmodel, p_stream, v_current, p_last_id USING ERRCODE = 'serialization_failure';
    END IF;
END
$$;
