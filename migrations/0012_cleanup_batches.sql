-- Deletes ended usage rows in batches. A table that grew while no cleanup ran, after an outage
-- of the cleanup task for example, holds more ended rows than one DELETE removes within the
-- store's statement timeout (2 s by default): 4,000,000 expired minute rows took longer than
-- that on PostgreSQL 15.20. The statement was then cancelled and rolled back on every pass, so
-- the table never shrank again. The store now calls this overload repeatedly, and each call
-- deletes at most p_max_rows rows, with the retention rules of migration 0008.
--
-- The tables do not change, and the one-argument function stays for callers that run it by hand.

CREATE FUNCTION highway.cleanup_tool_rate_limit_usage(p_ended_before TIMESTAMPTZ, p_max_rows INT)
RETURNS BIGINT
LANGUAGE plpgsql VOLATILE STRICT AS $$
DECLARE
    v_deleted BIGINT;
BEGIN
    IF p_max_rows < 1 THEN
        RAISE EXCEPTION 'invalid batch size %: expected 1 or more rows', p_max_rows
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    DELETE FROM highway.tool_rate_limit_usage
    WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM highway.tool_rate_limit_usage
        WHERE window_end < p_ended_before
            AND (window_type = 'minute'
                OR (window_type = 'hour' AND window_end < p_ended_before - interval '1 hour')
                OR window_end < p_ended_before - interval '2 days')
        LIMIT p_max_rows));
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
    RETURN v_deleted;
END $$;
