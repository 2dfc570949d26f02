-- Token leases: a worker takes a batch of tokens in one step and admits calls from it in process.
--
-- A lease is charged to the usage counters like calls are, so every window's count is the sum of
-- the admitted calls and the tokens that leases still hold. Counts never exceed the limits, and a
-- worker admits only the tokens it took, so no window admits more calls than its limit.

-- Takes up to p_want tokens from every window in p_window_types at once: the same number from
-- each, never more than the window with the fewest remaining tokens has left. A worker that holds
-- p_held tokens of these windows already ends up with at most ceil((remaining + p_held) * p_share)
-- tokens (or p_min more), so that leases shrink as a window nears its limit. When fewer than p_min
-- tokens can be granted, nothing is taken.
--
-- p_window_starts and p_window_ends give the windows' bounds; when they are NULL, the windows
-- containing now() are computed in p_timezone with weeks starting on p_week_start.
--
-- Returns one row per window, shortest first: its limit, its count after the take, its bounds, and
-- the number of tokens granted (the same on every row).
CREATE FUNCTION highway.lease_tool_rate_tokens(
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
    p_week_start TEXT DEFAULT 'monday')
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
    v_remaining BIGINT;
    v_grant BIGINT;
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

    -- Lock every window's row (creating the missing ones), in lock order, and read its count.
    INSERT INTO highway.tool_rate_limit_usage AS u
        (tenant_id, tool_name, scope_key, window_type, window_start, window_end, request_count, last_updated)
    SELECT p_tenant_id, p_tool_name, p_scope_key, w.kind, w.start_at, w.end_at, 0, now()
    FROM unnest(v_types, v_starts, v_ends) WITH ORDINALITY AS w(kind, start_at, end_at, ord)
    ORDER BY w.ord
    ON CONFLICT (tenant_id, tool_name, scope_key, window_type, window_start) DO NOTHING;

    SELECT array_agg(coalesce(locked.request_count, 0) ORDER BY w.ord) INTO v_counts
    FROM unnest(v_types, v_starts) WITH ORDINALITY AS w(kind, start_at, ord)
    LEFT JOIN LATERAL (
        SELECT u.request_count FROM highway.tool_rate_limit_usage u
        WHERE u.tenant_id = p_tenant_id AND u.tool_name = p_tool_name AND u.scope_key = p_scope_key
            AND u.window_type = w.kind AND u.window_start = w.start_at
        FOR UPDATE
    ) locked ON TRUE;

    -- The grant: what the tightest window allows, with the worker's holding capped by its share
    -- of that window.
    v_grant := p_want;
    FOR v_index IN 1 .. cardinality(v_types) LOOP
        v_remaining := greatest(v_limits[v_index] - v_counts[v_index], 0);
        v_grant := least(v_grant, v_remaining,
            greatest(p_min, ceil((v_remaining + p_held) * p_share)::BIGINT - p_held));
    END LOOP;
    IF v_grant < greatest(p_min, 1) THEN
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

-- Gives back p_tokens unused tokens of a lease to each of its windows that is still open at p_at
-- (now() when NULL). A window that has ended keeps its count: its tokens can no longer be used.
--
-- The caller must give back only tokens it will never admit, and each of them once: the function
-- cannot tell a lease's tokens from those of others. Returns the number of windows credited.
CREATE FUNCTION highway.return_tool_rate_tokens(
    p_tenant_id TEXT,
    p_tool_name TEXT,
    p_scope_key TEXT,
    p_tokens BIGINT,
    p_window_types TEXT[],
    p_window_starts TIMESTAMPTZ[],
    p_at TIMESTAMPTZ DEFAULT NULL)
RETURNS INT
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_credited INT;
BEGIN
    IF p_tokens IS NULL OR p_tokens < 1 THEN
        RAISE EXCEPTION 'invalid token count %: expected 1 or more', quote_nullable(p_tokens)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF cardinality(p_window_starts) IS DISTINCT FROM cardinality(p_window_types) THEN
        RAISE EXCEPTION 'invalid windows: p_window_types and p_window_starts must have the same length'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- Lock the rows in lock order (shortest window first), like every consume and lease, so that
    -- none deadlock, then credit them.
    PERFORM 1
    FROM unnest(p_window_types, p_window_starts) AS w(kind, start_at)
    JOIN highway.tool_rate_limit_usage u
        ON u.tenant_id = p_tenant_id AND u.tool_name = p_tool_name AND u.scope_key = p_scope_key
        AND u.window_type = w.kind AND u.window_start = w.start_at
    ORDER BY array_position(ARRAY['minute', 'hour', 'day', 'week', 'month'], w.kind)
    FOR UPDATE OF u;

    UPDATE highway.tool_rate_limit_usage u
    SET request_count = greatest(u.request_count - p_tokens, 0), last_updated = now()
    FROM unnest(p_window_types, p_window_starts) AS w(kind, start_at)
    WHERE u.tenant_id = p_tenant_id AND u.tool_name = p_tool_name AND u.scope_key = p_scope_key
        AND u.window_type = w.kind AND u.window_start = w.start_at
        AND u.window_end > coalesce(p_at, now());
    GET DIAGNOSTICS v_credited = ROW_COUNT;
    RETURN v_credited;
END $$;
