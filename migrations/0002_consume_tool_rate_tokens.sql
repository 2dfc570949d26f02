-- Calendar windows computed by the database clock, the atomic consume function, and cleanup.

-- Returns the ISO day number (Monday = 1 … Sunday = 7) of an English weekday name.
CREATE FUNCTION highway.isodow_of(p_weekday TEXT) RETURNS INT
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_day INT := array_position(
        ARRAY['monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday'],
        lower(p_weekday));
BEGIN
    IF v_day IS NULL THEN
        RAISE EXCEPTION 'invalid week start %: expected an English weekday name such as monday',
            quote_nullable(p_weekday)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN v_day;
END $$;

-- Returns the earliest instant whose local time in p_timezone is p_local.
--
-- PostgreSQL resolves a local time that occurs twice (when clocks go back) to the later instant,
-- so the earlier one is tried first with the offset in force a day before. A local time that the
-- clocks skip maps to the instant it would be under the offset in force before the change, which
-- is what PostgreSQL returns.
CREATE FUNCTION highway.local_instant(p_local TIMESTAMP, p_timezone TEXT) RETURNS TIMESTAMPTZ
LANGUAGE plpgsql STABLE STRICT AS $$
DECLARE
    v_instant TIMESTAMPTZ := p_local AT TIME ZONE p_timezone;
    v_day_before TIMESTAMPTZ := v_instant - INTERVAL '1 day';
    v_offset_before INTERVAL :=
        (v_day_before AT TIME ZONE p_timezone) - (v_day_before AT TIME ZONE 'UTC');
    v_earlier TIMESTAMPTZ := (p_local - v_offset_before) AT TIME ZONE 'UTC';
BEGIN
    IF v_earlier < v_instant AND (v_earlier AT TIME ZONE p_timezone) = p_local THEN
        RETURN v_earlier;
    END IF;
    RETURN v_instant;
END $$;

-- Returns the window of type p_window_type that contains p_at, in the calendar of p_timezone.
--
-- Minute and hour windows follow the local clock through the offset in force at p_at. Day, week
-- and month windows start at the first instant of their first local date: local midnight, or the
-- first local time that exists on that date where the clocks skip midnight.
CREATE FUNCTION highway.window_bounds(
    p_window_type TEXT,
    p_at TIMESTAMPTZ,
    p_timezone TEXT,
    p_week_start TEXT,
    OUT window_start TIMESTAMPTZ,
    OUT window_end TIMESTAMPTZ)
LANGUAGE plpgsql STABLE STRICT AS $$
DECLARE
    v_local TIMESTAMP := p_at AT TIME ZONE p_timezone;
    v_first DATE;
    v_next DATE;
BEGIN
    CASE p_window_type
    WHEN 'minute' THEN
        window_start := p_at - (v_local - date_trunc('minute', v_local));
        window_end := window_start + INTERVAL '1 minute';
        RETURN;
    WHEN 'hour' THEN
        window_start := p_at - (v_local - date_trunc('hour', v_local));
        window_end := window_start + INTERVAL '1 hour';
        RETURN;
    WHEN 'day' THEN
        v_first := v_local::date;
        v_next := v_first + 1;
    WHEN 'week' THEN
        v_first := v_local::date
            - ((extract(isodow FROM v_local)::int - highway.isodow_of(p_week_start) + 7) % 7);
        v_next := v_first + 7;
    WHEN 'month' THEN
        v_first := date_trunc('month', v_local)::date;
        v_next := (v_first + INTERVAL '1 month')::date;
    ELSE
        RAISE EXCEPTION 'invalid window type %: expected minute, hour, day, week or month',
            quote_nullable(p_window_type)
            USING ERRCODE = 'invalid_parameter_value';
    END CASE;
    window_start := highway.local_instant(v_first::timestamp, p_timezone);
    window_end := highway.local_instant(v_next::timestamp, p_timezone);
END $$;

-- Checks p_cost against every window in p_window_types and, when p_consume is true and every
-- window has room, adds it to every window's counter. All or nothing: a rejected call changes no
-- counter.
--
-- p_window_types lists distinct window types, shortest first (minute, hour, day, week, month);
-- every call locks its rows in this order, so concurrent calls cannot deadlock. The windows are
-- those containing p_at, or now() when p_at is NULL, in p_timezone with weeks starting on
-- p_week_start. p_window_starts and p_window_ends may give their bounds, computed by the caller:
-- the function uses them when every one of these windows contains the instant, and computes the
-- windows itself otherwise, so a caller whose clock is off by a few seconds costs only time.
--
-- Returns one row per window, in the order given: its limit, its count after the decision, its
-- bounds, and whether the call was admitted (for a peek: whether it would be).
--
-- A consume charges every window with one upsert whose conflict clause rejects a window without
-- room but still locks its row. If a window rejected the call, the call subtracts the cost again
-- from the windows it charged before it commits, so other transactions never see the charge. An
-- admitted call, the common case, writes each row once and reads none beforehand.
CREATE FUNCTION highway.consume_tool_rate_tokens(
    p_tenant_id TEXT,
    p_tool_name TEXT,
    p_scope_key TEXT,
    p_cost BIGINT,
    p_window_types TEXT[],
    p_limits BIGINT[],
    p_at TIMESTAMPTZ DEFAULT NULL,
    p_window_starts TIMESTAMPTZ[] DEFAULT NULL,
    p_window_ends TIMESTAMPTZ[] DEFAULT NULL,
    p_timezone TEXT DEFAULT 'UTC',
    p_week_start TEXT DEFAULT 'monday',
    p_consume BOOLEAN DEFAULT TRUE)
RETURNS TABLE (
    window_type TEXT,
    window_limit BIGINT,
    request_count BIGINT,
    window_start TIMESTAMPTZ,
    window_end TIMESTAMPTZ,
    admitted BOOLEAN)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_windows INT := cardinality(p_window_types);
    v_at TIMESTAMPTZ := coalesce(p_at, now());
    v_starts TIMESTAMPTZ[] := p_window_starts;
    v_ends TIMESTAMPTZ[] := p_window_ends;
    v_fits BOOLEAN;
    v_index INT;
    v_rank INT;
    v_last_rank INT := 0;
    v_bounds RECORD;
    v_charged_types TEXT[];
    v_counts BIGINT[];
BEGIN
    -- One expression checks the common case: a positive cost, valid limits, and windows given
    -- shortest first that contain the instant.
    IF p_cost >= 1 AND cardinality(p_limits) = v_windows AND 0 <= ALL (p_limits)
        AND cardinality(v_starts) = v_windows AND cardinality(v_ends) = v_windows
        AND v_at >= ALL (v_starts) AND v_at < ALL (v_ends)
        AND p_window_types <@ ARRAY['minute', 'hour', 'day', 'week', 'month']
        AND (v_windows = 1 OR v_ends[1] < v_ends[2] AND (v_windows = 2 OR v_ends[2] < v_ends[3]
            AND (v_windows = 3 OR v_ends[3] < v_ends[4] AND (v_windows = 4 OR v_ends[4] < v_ends[5]))))
    THEN
        NULL;
    ELSE
        IF p_cost IS NULL OR p_cost < 1 THEN
            RAISE EXCEPTION 'invalid cost %: a call costs at least 1 unit', quote_nullable(p_cost)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF v_windows IS NULL OR cardinality(p_limits) IS DISTINCT FROM v_windows THEN
            RAISE EXCEPTION 'invalid windows: p_window_types and p_limits must have the same length'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        FOR v_index IN 1 .. v_windows LOOP
            v_rank := array_position(ARRAY['minute', 'hour', 'day', 'week', 'month'], p_window_types[v_index]);
            IF v_rank IS NULL OR v_rank <= v_last_rank THEN
                RAISE EXCEPTION 'invalid window types %: expected distinct values among minute, hour, day, week and month, shortest first',
                    p_window_types
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            v_last_rank := v_rank;
            IF p_limits[v_index] IS NULL OR p_limits[v_index] < 0 THEN
                RAISE EXCEPTION 'invalid % limit %: expected 0 or more', p_window_types[v_index],
                    quote_nullable(p_limits[v_index])
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
        END LOOP;
        -- The given bounds do not all contain the instant: compute the windows.
        IF NOT coalesce(cardinality(v_starts) = v_windows AND cardinality(v_ends) = v_windows
                AND v_at >= ALL (v_starts) AND v_at < ALL (v_ends), FALSE) THEN
            v_starts := '{}';
            v_ends := '{}';
            FOR v_index IN 1 .. v_windows LOOP
                v_bounds := highway.window_bounds(p_window_types[v_index], v_at, p_timezone, p_week_start);
                v_starts := v_starts || v_bounds.window_start;
                v_ends := v_ends || v_bounds.window_end;
            END LOOP;
        END IF;
    END IF;

    -- A window whose limit is below the cost rejects the call whatever its count.
    v_fits := p_cost <= ALL (p_limits);
    IF p_consume AND v_fits THEN
        WITH charged AS (
            INSERT INTO highway.tool_rate_limit_usage AS u
                (tenant_id, tool_name, scope_key, window_type, window_start, window_end,
                 request_count, last_updated)
            SELECT p_tenant_id, p_tool_name, p_scope_key, w.kind, w.start_at, w.end_at, p_cost, now()
            FROM unnest(p_window_types, v_starts, v_ends) WITH ORDINALITY AS w(kind, start_at, end_at, ord)
            ORDER BY w.ord
            ON CONFLICT (tenant_id, tool_name, scope_key, window_type, window_start)
            DO UPDATE SET
                request_count = u.request_count + EXCLUDED.request_count,
                last_updated = EXCLUDED.last_updated
            WHERE u.request_count + EXCLUDED.request_count
                <= p_limits[array_position(p_window_types, u.window_type)]
            RETURNING u.window_type, u.request_count
        )
        SELECT array_agg(c.window_type), array_agg(c.request_count)
        INTO v_charged_types, v_counts
        FROM charged c;

        IF cardinality(v_charged_types) = v_windows THEN
            RETURN QUERY
            SELECT w.kind, w.window_limit, v_counts[array_position(v_charged_types, w.kind)],
                w.start_at, w.end_at, TRUE
            FROM unnest(p_window_types, p_limits, v_starts, v_ends)
                AS w(kind, window_limit, start_at, end_at);
            RETURN;
        END IF;

        -- A window rejected the call: undo the charge of the others, whose rows this transaction holds.
        v_fits := FALSE;
        UPDATE highway.tool_rate_limit_usage u
        SET request_count = u.request_count - p_cost
        FROM unnest(p_window_types, v_starts) AS w(kind, start_at)
        WHERE u.tenant_id = p_tenant_id
            AND u.tool_name = p_tool_name
            AND u.scope_key = p_scope_key
            AND u.window_type = w.kind
            AND u.window_start = w.start_at
            AND w.kind = ANY (v_charged_types);
    END IF;

    -- A rejection or a peek: report the counts as they are, without taking a lock. Within a
    -- window a committed count only grows, since a rejected call undoes its charge before it
    -- commits.
    RETURN QUERY
    SELECT w.kind, w.window_limit, coalesce(u.request_count, 0), w.start_at, w.end_at,
        v_fits AND bool_and(coalesce(u.request_count, 0) + p_cost <= w.window_limit) OVER ()
    FROM unnest(p_window_types, p_limits, v_starts, v_ends) WITH ORDINALITY
        AS w(kind, window_limit, start_at, end_at, ord)
    LEFT JOIN LATERAL (
        SELECT u.request_count FROM highway.tool_rate_limit_usage u
        WHERE u.tenant_id = p_tenant_id
            AND u.tool_name = p_tool_name
            AND u.scope_key = p_scope_key
            AND u.window_type = w.kind
            AND u.window_start = w.start_at
    ) u ON TRUE
    ORDER BY w.ord;
END $$;

-- Deletes the usage rows of windows that ended before p_ended_before and returns how many.
CREATE FUNCTION highway.cleanup_tool_rate_limit_usage(p_ended_before TIMESTAMPTZ) RETURNS BIGINT
LANGUAGE plpgsql VOLATILE STRICT AS $$
DECLARE
    v_deleted BIGINT;
BEGIN
    DELETE FROM highway.tool_rate_limit_usage WHERE window_end < p_ended_before;
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
    RETURN v_deleted;
END $$;
