-- Lease takes and batches that deadlocked with consumes, and leases of windows whose limit is near
-- the largest BIGINT.
--
-- The lease function created the missing rows of a take's windows first, then locked the rows in
-- lock order. So did the batch function when a row had no room for the batch's total. A consume
-- upserts its rows one by one in that order. So when a key's minute row existed and its day row
-- did not (after a day limit was added), a consume could lock the minute row and wait for the day
-- row that a take or a batch had just created, while the take or batch waited for the minute row.
-- The server then cancelled one of them with "deadlock detected". Both functions now create and
-- lock each row before the next one.
--
-- It also capped a grant at ceil((remaining + held) * share), computed in DOUBLE PRECISION and
-- cast to BIGINT. Near 9223372036854775807 (the largest BIGINT) the product rounds up to 2^63, so
-- with a share of 1 every take of a window with such a limit failed with "bigint out of range",
-- and so did a sum of remaining and held tokens past the largest BIGINT. The cap is now NUMERIC,
-- converted from the double without losing digits, and at most the remaining plus the held
-- tokens. The function is otherwise that of migration 0008.
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
    v_total NUMERIC;
    v_share DOUBLE PRECISION;
    v_cap NUMERIC;
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
    -- of that window. The share is computed in DOUBLE PRECISION, as in migration 0008, and can
    -- round past the largest BIGINT, so the cap is NUMERIC and at most the remaining and held
    -- tokens. A cast of a double to NUMERIC keeps only 15 significant digits, so the double goes
    -- through BIGINT, exact below 2^63. At or above 2^63 a double is a multiple of 2048, and its
    -- 2048th fits a BIGINT exactly. A share of 1 caps at every token, which the double can round
    -- below.
    v_grant := p_want;
    FOR v_index IN 1 .. cardinality(v_types) LOOP
        v_remaining := greatest(v_limits[v_index] - v_counts[v_index], 0);
        v_total := v_remaining::NUMERIC + p_held;
        v_share := ceil((v_remaining::DOUBLE PRECISION + p_held) * p_share);
        v_cap := least(v_total,
            CASE
                WHEN p_share = 1 THEN v_total
                WHEN v_share < 9223372036854775807::DOUBLE PRECISION THEN v_share::BIGINT::NUMERIC
                ELSE (v_share / 2048)::BIGINT::NUMERIC * 2048
            END);
        v_grant := least(v_grant, v_remaining, greatest(p_min, v_cap - p_held));
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

-- Migration 0007's batch function, which locks its rows like the lease function above.
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
    v_count BIGINT;
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
        -- Lock every row in lock order, creating each missing row just before it is locked. A
        -- consume upserts its rows one by one in this order, so a batch that created a later row
        -- before it locked an earlier one could deadlock with it.
        v_before := '{}';
        FOR v_index IN 1 .. cardinality(v_row_tenants) LOOP
            INSERT INTO highway.tool_rate_limit_usage
                (tenant_id, tool_name, scope_key, window_type, window_start, window_end,
                 request_count, last_updated)
            VALUES (v_row_tenants[v_index], v_row_tools[v_index], v_row_scopes[v_index],
                v_row_types[v_index], v_row_starts[v_index], v_row_ends[v_index], 0, now())
            ON CONFLICT (tenant_id, tool_name, scope_key, window_type, window_start) DO NOTHING;

            v_count := NULL;
            SELECT u.request_count INTO v_count
            FROM highway.tool_rate_limit_usage u
            WHERE u.tenant_id = v_row_tenants[v_index] AND u.tool_name = v_row_tools[v_index]
                AND u.scope_key = v_row_scopes[v_index] AND u.window_type = v_row_types[v_index]
                AND u.window_start = v_row_starts[v_index]
            FOR UPDATE;
            v_before := v_before || coalesce(v_count, 0);
        END LOOP;
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
