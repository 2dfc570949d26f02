-- Counts near the largest BIGINT.
--
-- The consume functions compared a window's count plus the cost with the limit, so a limit near
-- 9223372036854775807 (the largest BIGINT) made that sum overflow: a call that did not fit failed
-- with "bigint out of range" instead of being rejected. They now compare the count with the limit
-- minus the cost, which cannot overflow since limits are 0 or more and costs 1 or more, and the
-- batch function sums the costs of a row as NUMERIC. Both functions are otherwise those of
-- migrations 0002 and 0005.
--
-- The tables do not change.

CREATE OR REPLACE FUNCTION highway.consume_tool_rate_tokens(
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
            WHERE u.request_count
                <= p_limits[array_position(p_window_types, u.window_type)] - EXCLUDED.request_count
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
        v_fits AND bool_and(coalesce(u.request_count, 0) <= w.window_limit - p_cost) OVER ()
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

CREATE OR REPLACE FUNCTION highway.consume_tool_rate_tokens_batch(
    p_call INT[],
    p_tenant_ids TEXT[],
    p_tool_names TEXT[],
    p_scope_keys TEXT[],
    p_costs BIGINT[],
    p_window_types TEXT[],
    p_limits BIGINT[],
    p_window_starts TIMESTAMPTZ[],
    p_window_ends TIMESTAMPTZ[],
    p_timezones TEXT[],
    p_week_starts TEXT[])
RETURNS TABLE (
    call_index INT,
    window_type TEXT,
    window_limit BIGINT,
    request_count BIGINT,
    window_end TIMESTAMPTZ,
    admitted BOOLEAN)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_items INT := cardinality(p_call);
    v_starts TIMESTAMPTZ[];
    v_ends TIMESTAMPTZ[];
    -- The usage row of each item, and the distinct rows in lock order.
    v_row_of INT[];
    v_row_tenants TEXT[];
    v_row_tools TEXT[];
    v_row_scopes TEXT[];
    v_row_types TEXT[];
    v_row_starts TIMESTAMPTZ[];
    v_row_ends TIMESTAMPTZ[];
    v_before BIGINT[];
    v_counts BIGINT[];
    v_item_counts BIGINT[] := array_fill(0::BIGINT, ARRAY[v_items]);
    v_item_admitted BOOLEAN[] := array_fill(FALSE, ARRAY[v_items]);
    v_first INT;
    v_last INT;
    v_fits BOOLEAN;
    v_index INT;
    -- The batch's total cost per row, the smallest limit a call gives it, and its count after
    -- the total.
    v_demand BIGINT[];
    v_row_limits BIGINT[];
    v_after BIGINT[];
    v_charged BOOLEAN := FALSE;
    -- The rows that the upsert of the total charged, by their place in lock order.
    v_charged_rows BIGINT[];
BEGIN
    IF v_items IS NULL OR v_items = 0 THEN
        RETURN;
    END IF;
    IF cardinality(p_tenant_ids) <> v_items OR cardinality(p_tool_names) <> v_items
        OR cardinality(p_scope_keys) <> v_items OR cardinality(p_costs) <> v_items
        OR cardinality(p_window_types) <> v_items OR cardinality(p_limits) <> v_items
        OR cardinality(p_window_starts) <> v_items OR cardinality(p_window_ends) <> v_items
        OR cardinality(p_timezones) <> v_items OR cardinality(p_week_starts) <> v_items THEN
        RAISE EXCEPTION 'invalid batch: every array must have one element per item'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- Windows by the database clock, computed once per window type, time zone and week start.
    WITH items AS (
        SELECT * FROM unnest(p_window_types, p_timezones, p_week_starts, p_window_starts, p_window_ends)
            WITH ORDINALITY AS i(kind, zone, week_start, start_at, end_at, ord)
    ), calendars AS (
        SELECT DISTINCT kind, zone, week_start FROM items WHERE start_at IS NULL
    ), bounds AS (
        SELECT c.kind, c.zone, c.week_start, b.window_start, b.window_end
        FROM calendars c, highway.window_bounds(c.kind, now(), c.zone, c.week_start) b
    )
    SELECT array_agg(coalesce(i.start_at, b.window_start) ORDER BY i.ord),
           array_agg(coalesce(i.end_at, b.window_end) ORDER BY i.ord)
    INTO v_starts, v_ends
    FROM items i
    LEFT JOIN bounds b
        ON i.start_at IS NULL AND b.kind = i.kind AND b.zone = i.zone AND b.week_start = i.week_start;

    -- Number the distinct usage rows in one fixed order (key, then window shortest first, then
    -- start). Every batch locks its rows in this order, so concurrent batches cannot deadlock.
    WITH items AS (
        SELECT i.*, dense_rank() OVER (
                ORDER BY i.tenant COLLATE "C", i.tool COLLATE "C", i.scope COLLATE "C",
                    array_position(ARRAY['minute', 'hour', 'day', 'week', 'month'], i.kind), i.start_at
            ) AS row_number
        FROM unnest(p_tenant_ids, p_tool_names, p_scope_keys, p_window_types, v_starts, v_ends)
            WITH ORDINALITY AS i(tenant, tool, scope, kind, start_at, end_at, ord)
    ), usage_rows AS (
        SELECT DISTINCT ON (row_number) row_number, tenant, tool, scope, kind, start_at, end_at
        FROM items
        ORDER BY row_number
    )
    SELECT (SELECT array_agg(row_number::INT ORDER BY ord) FROM items),
           array_agg(tenant ORDER BY row_number), array_agg(tool ORDER BY row_number),
           array_agg(scope ORDER BY row_number), array_agg(kind ORDER BY row_number),
           array_agg(start_at ORDER BY row_number), array_agg(end_at ORDER BY row_number)
    INTO v_row_of, v_row_tenants, v_row_tools, v_row_scopes, v_row_types, v_row_starts, v_row_ends
    FROM usage_rows;

    -- When every row has room for the total cost of the batch's calls, one upsert charges each
    -- row that total, in lock order, and every call is admitted. Otherwise the upsert is undone
    -- (the rows stay locked) and the calls are decided one by one below.
    IF 1 <= ALL (p_costs) AND 0 <= ALL (p_limits) THEN
        -- The sums are NUMERIC: a total beyond the largest BIGINT does not fit, and is not cast.
        SELECT array_agg(least(d.demand, 9223372036854775807)::BIGINT ORDER BY d.row_number),
            array_agg(d.row_limit ORDER BY d.row_number), bool_and(d.demand <= d.row_limit)
        INTO v_demand, v_row_limits, v_fits
        FROM (
            SELECT i.row_number, sum(i.cost) AS demand, min(i.row_limit) AS row_limit
            FROM unnest(v_row_of, p_costs, p_limits) AS i(row_number, cost, row_limit)
            GROUP BY i.row_number
        ) d;

        IF v_fits THEN
            WITH charged AS (
                INSERT INTO highway.tool_rate_limit_usage AS u
                    (tenant_id, tool_name, scope_key, window_type, window_start, window_end,
                     request_count, last_updated)
                SELECT r.tenant, r.tool, r.scope, r.kind, r.start_at, r.end_at, r.demand, now()
                FROM unnest(v_row_tenants, v_row_tools, v_row_scopes, v_row_types, v_row_starts,
                        v_row_ends, v_demand)
                    WITH ORDINALITY AS r(tenant, tool, scope, kind, start_at, end_at, demand, ord)
                ORDER BY r.ord
                ON CONFLICT (tenant_id, tool_name, scope_key, window_type, window_start)
                DO UPDATE SET
                    request_count = u.request_count + EXCLUDED.request_count,
                    last_updated = EXCLUDED.last_updated
                -- A count that the total would carry past the largest BIGINT is left alone, and
                -- the row is missing from the result.
                WHERE u.request_count <= 9223372036854775807 - EXCLUDED.request_count
                RETURNING u.tenant_id, u.tool_name, u.scope_key, u.window_type, u.window_start,
                    u.request_count
            )
            SELECT array_agg(c.request_count ORDER BY r.ord),
                count(*) = cardinality(v_row_tenants) AND bool_and(c.request_count <= r.row_limit),
                array_agg(r.ord)
            INTO v_after, v_fits, v_charged_rows
            FROM unnest(v_row_tenants, v_row_tools, v_row_scopes, v_row_types, v_row_starts, v_row_limits)
                WITH ORDINALITY AS r(tenant, tool, scope, kind, start_at, row_limit, ord)
            JOIN charged c
                ON c.tenant_id = r.tenant AND c.tool_name = r.tool AND c.scope_key = r.scope
                AND c.window_type = r.kind AND c.window_start = r.start_at;

            IF v_fits THEN
                v_charged := TRUE;
                v_before := array_fill(0::BIGINT, ARRAY[cardinality(v_after)]);
                FOR v_index IN 1 .. cardinality(v_after) LOOP
                    v_before[v_index] := v_after[v_index] - v_demand[v_index];
                END LOOP;
            ELSE
                UPDATE highway.tool_rate_limit_usage u
                SET request_count = u.request_count - r.demand
                FROM unnest(v_row_tenants, v_row_tools, v_row_scopes, v_row_types, v_row_starts, v_demand)
                    WITH ORDINALITY AS r(tenant, tool, scope, kind, start_at, demand, ord)
                WHERE u.tenant_id = r.tenant AND u.tool_name = r.tool AND u.scope_key = r.scope
                    AND u.window_type = r.kind AND u.window_start = r.start_at
                    AND r.ord = ANY (v_charged_rows);
            END IF;
        END IF;
    END IF;

    IF NOT v_charged THEN
        -- Create the missing rows, then lock every row, both in lock order.
        INSERT INTO highway.tool_rate_limit_usage
            (tenant_id, tool_name, scope_key, window_type, window_start, window_end, request_count, last_updated)
        SELECT r.tenant, r.tool, r.scope, r.kind, r.start_at, r.end_at, 0, now()
        FROM unnest(v_row_tenants, v_row_tools, v_row_scopes, v_row_types, v_row_starts, v_row_ends)
            WITH ORDINALITY AS r(tenant, tool, scope, kind, start_at, end_at, ord)
        ORDER BY r.ord
        ON CONFLICT (tenant_id, tool_name, scope_key, window_type, window_start) DO NOTHING;

        SELECT array_agg(coalesce(locked.request_count, 0) ORDER BY r.ord) INTO v_before
        FROM unnest(v_row_tenants, v_row_tools, v_row_scopes, v_row_types, v_row_starts)
            WITH ORDINALITY AS r(tenant, tool, scope, kind, start_at, ord)
        LEFT JOIN LATERAL (
            SELECT u.request_count FROM highway.tool_rate_limit_usage u
            WHERE u.tenant_id = r.tenant AND u.tool_name = r.tool AND u.scope_key = r.scope
                AND u.window_type = r.kind AND u.window_start = r.start_at
            FOR UPDATE
        ) locked ON TRUE;
    END IF;
    v_counts := v_before;

    -- Decide the calls in order, each against the counts the calls before it left.
    v_first := 1;
    WHILE v_first <= v_items LOOP
        v_last := v_first;
        WHILE v_last < v_items AND p_call[v_last + 1] = p_call[v_first] LOOP
            v_last := v_last + 1;
        END LOOP;

        IF p_costs[v_first] IS NULL OR p_costs[v_first] < 1 THEN
            RAISE EXCEPTION 'invalid cost %: a call costs at least 1 unit', quote_nullable(p_costs[v_first])
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        v_fits := TRUE;
        FOR v_index IN v_first .. v_last LOOP
            v_fits := v_fits AND v_counts[v_row_of[v_index]] <= p_limits[v_index] - p_costs[v_index];
        END LOOP;
        FOR v_index IN v_first .. v_last LOOP
            IF v_fits THEN
                v_counts[v_row_of[v_index]] := v_counts[v_row_of[v_index]] + p_costs[v_index];
            END IF;
            v_item_counts[v_index] := v_counts[v_row_of[v_index]];
            v_item_admitted[v_index] := v_fits;
        END LOOP;

        v_first := v_last + 1;
    END LOOP;

    IF NOT v_charged THEN
        -- Write the rows whose counts changed. The rows are locked already; the upsert also restores
        -- a row that a cleanup deleted meanwhile.
        INSERT INTO highway.tool_rate_limit_usage AS u
            (tenant_id, tool_name, scope_key, window_type, window_start, window_end, request_count, last_updated)
        SELECT r.tenant, r.tool, r.scope, r.kind, r.start_at, r.end_at, r.count_after, now()
        FROM unnest(v_row_tenants, v_row_tools, v_row_scopes, v_row_types, v_row_starts, v_row_ends, v_before, v_counts)
            WITH ORDINALITY AS r(tenant, tool, scope, kind, start_at, end_at, count_before, count_after, ord)
        WHERE r.count_after <> r.count_before
        ORDER BY r.ord
        ON CONFLICT (tenant_id, tool_name, scope_key, window_type, window_start)
        DO UPDATE SET request_count = EXCLUDED.request_count, last_updated = EXCLUDED.last_updated;
    END IF;

    RETURN QUERY
    SELECT i.call, i.kind, i.window_limit, i.count_after, i.end_at, i.is_admitted
    FROM unnest(p_call, p_window_types, p_limits, v_item_counts, v_ends, v_item_admitted)
        AS i(call, kind, window_limit, count_after, end_at, is_admitted);
END $$;
