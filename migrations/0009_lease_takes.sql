-- Lease takes that deadlocked with consumes, and leases of windows whose limit is near the
-- largest BIGINT.
--
-- The lease function created the missing rows of a take's windows first, then locked the rows in
-- lock order. A consume upserts its rows one by one in that order. So when a key's minute row
-- existed and its day row did not (after a day limit was added), a consume could lock the minute
-- row and wait for the day row that a take had just created, while the take waited for the
-- minute row: the server cancelled one of them with "deadlock detected". The function now creates
-- and locks each row before the next one.
--
-- It also capped a grant at ceil((remaining + held) * share), computed in DOUBLE PRECISION and
-- cast to BIGINT. Near 9223372036854775807 (the largest BIGINT) the product rounds up to 2^63, so
-- with a share of 1 every take of a window with such a limit failed with "bigint out of range",
-- and so did a sum of remaining and held tokens past the largest BIGINT. The cap is now at most
-- the remaining plus the held tokens, as NUMERIC. The function is otherwise that of migration 0008.
--
-- The tables do not change.

CREATE OR REPLACE FUNCTION highway.lease_tool_rate_tokens(
    p_tenant_id TEXT,
    p_tool_name TEXT,
    p_scope_key TEXT,
    p_want BIGINT,
    p_min BIGINT,
    p_held BIGINT,
    p_share DOUBLE PRECISION,
    p_window_types TEXT[],
    p_limits BIGINT[],
    p_window_starts TIMESTAMPTZ[] DEFAULT NULL,
    p_window_ends TIMESTAMPTZ[] DEFAULT NULL,
    p_timezone TEXT DEFAULT 'UTC',
    p_week_start TEXT DEFAULT 'monday',
    p_explicit_instant BOOLEAN DEFAULT FALSE)
RETURNS TABLE (
    window_type TEXT,
    window_limit BIGINT,
    request_count BIGINT,
    window_start TIMESTAMPTZ,
    window_end TIMESTAMPTZ,
    granted BIGINT)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_kind TEXT;
    v_index INT;
    v_bounds RECORD;
    v_types TEXT[] := '{}';
    v_limits BIGINT[] := '{}';
    v_starts TIMESTAMPTZ[] := '{}';
    v_ends TIMESTAMPTZ[] := '{}';
    v_counts BIGINT[];
    v_count BIGINT;
    v_remaining BIGINT;
    v_grant BIGINT;
    v_missing BOOLEAN;
BEGIN
    IF p_want IS NULL OR p_min IS NULL OR p_held IS NULL OR p_min < 0 OR p_held < 0
        OR p_want < greatest(p_min, 1) THEN
        RAISE EXCEPTION 'invalid lease request: want %, min %, held %: expected 1 <= want, 0 <= min <= want and 0 <= held',
            quote_nullable(p_want), quote_nullable(p_min), quote_nullable(p_held)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_share IS NULL OR NOT (p_share > 0 AND p_share <= 1) THEN
        RAISE EXCEPTION 'invalid lease share %: expected a fraction in (0, 1]', quote_nullable(p_share)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF cardinality(p_limits) IS DISTINCT FROM cardinality(p_window_types)
        OR (p_window_starts IS NOT NULL
            AND (cardinality(p_window_starts) IS DISTINCT FROM cardinality(p_window_types)
                OR cardinality(p_window_ends) IS DISTINCT FROM cardinality(p_window_types))) THEN
        RAISE EXCEPTION 'invalid windows: p_window_types, p_limits, p_window_starts and p_window_ends must have the same length'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- The windows shortest first: the lock order of every consume and lease, so none deadlock.
    FOREACH v_kind IN ARRAY ARRAY['minute', 'hour', 'day', 'week', 'month'] LOOP
        v_index := array_position(p_window_types, v_kind);
        CONTINUE WHEN v_index IS NULL;
        IF p_limits[v_index] IS NULL OR p_limits[v_index] < 0 THEN
            RAISE EXCEPTION 'invalid % limit %: expected 0 or more', v_kind, quote_nullable(p_limits[v_index])
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        v_types := v_types || v_kind;
        v_limits := v_limits || p_limits[v_index];
        IF p_window_starts IS NULL THEN
            v_bounds := highway.window_bounds(v_kind, now(), p_timezone, p_week_start);
            v_starts := v_starts || v_bounds.window_start;
            v_ends := v_ends || v_bounds.window_end;
        ELSE
            v_starts := v_starts || p_window_starts[v_index];
            v_ends := v_ends || p_window_ends[v_index];
        END IF;
    END LOOP;
    IF cardinality(v_types) = 0 OR cardinality(v_types) <> cardinality(p_window_types) THEN
        RAISE EXCEPTION 'invalid window types %: expected distinct values among minute, hour, day, week and month',
            p_window_types
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- Lock every window's row, creating the missing ones, in lock order, and read its count. Each
    -- row is created and locked before the next one: a consume locks the rows it finds and creates
    -- the missing ones in this order too, so a take that created a later row before it locked an
    -- earlier one could deadlock with it. A worker's window that has ended by the database clock
    -- gets no new row: a cleanup may have deleted its row after it admitted its limit. Such a
    -- window counts as full, and the worker, whose clock is behind, takes nothing from it.
    v_counts := '{}';
    v_missing := FALSE;
    FOR v_index IN 1 .. cardinality(v_types) LOOP
        IF p_explicit_instant OR v_ends[v_index] > now() THEN
            INSERT INTO highway.tool_rate_limit_usage
                (tenant_id, tool_name, scope_key, window_type, window_start, window_end,
                 request_count, last_updated)
            VALUES (p_tenant_id, p_tool_name, p_scope_key, v_types[v_index], v_starts[v_index],
                v_ends[v_index], 0, now())
            ON CONFLICT (tenant_id, tool_name, scope_key, window_type, window_start) DO NOTHING;
        END IF;

        v_count := NULL;
        SELECT u.request_count INTO v_count
        FROM highway.tool_rate_limit_usage u
        WHERE u.tenant_id = p_tenant_id AND u.tool_name = p_tool_name AND u.scope_key = p_scope_key
            AND u.window_type = v_types[v_index] AND u.window_start = v_starts[v_index]
        FOR UPDATE;
        v_missing := v_missing OR v_count IS NULL;
        v_counts := v_counts || coalesce(v_count, v_limits[v_index]);
    END LOOP;

    -- The grant: what the tightest window allows, with the worker's holding capped by its share
    -- of that window. The share is computed in DOUBLE PRECISION, which rounds a BIGINT near the
    -- largest one up past it, so the cap is at most the remaining and held tokens, as NUMERIC.
    v_grant := p_want;
    FOR v_index IN 1 .. cardinality(v_types) LOOP
        v_remaining := greatest(v_limits[v_index] - v_counts[v_index], 0);
        v_grant := least(v_grant, v_remaining,
            greatest(p_min,
                least(ceil((v_remaining::DOUBLE PRECISION + p_held) * p_share)::NUMERIC,
                    v_remaining::NUMERIC + p_held) - p_held));
    END LOOP;
    IF v_grant < greatest(p_min, 1) OR v_missing THEN
        v_grant := 0;
    END IF;

    IF v_grant > 0 THEN
        UPDATE highway.tool_rate_limit_usage u
        SET request_count = u.request_count + v_grant, last_updated = now()
        FROM unnest(v_types, v_starts) AS w(kind, start_at)
        WHERE u.tenant_id = p_tenant_id AND u.tool_name = p_tool_name AND u.scope_key = p_scope_key
            AND u.window_type = w.kind AND u.window_start = w.start_at;
        FOR v_index IN 1 .. cardinality(v_types) LOOP
            v_counts[v_index] := v_counts[v_index] + v_grant;
        END LOOP;
    END IF;

    RETURN QUERY
    SELECT w.kind, w.window_limit, w.request_count, w.start_at, w.end_at, v_grant
    FROM unnest(v_types, v_limits, v_counts, v_starts, v_ends)
        AS w(kind, window_limit, request_count, start_at, end_at);
END $$;
