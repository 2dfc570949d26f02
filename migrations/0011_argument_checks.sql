-- Argument checks that the usage table's CHECK constraints no longer back up.
--
-- Migration 0010 dropped the constraints on window_type, on window_end > window_start and on
-- request_count >= 0, on the grounds that every function checks its arguments before it writes.
-- Four functions let arguments through that wrote rows those constraints would have rejected, or
-- that corrupted counts:
--
-- * consume_tool_rate_tokens checked the order of the window types on its common path only by
--   the order of the window ends. Given bounds that contain the instant, it accepted a window type
--   twice (or hour before minute). With a type twice, a rejected call subtracted its cost from
--   every row of that type, including the row that had rejected it, so that row's count could go
--   below 0. The common path now compares the types' positions in minute, hour, day, week, month.
-- * consume_tool_rate_tokens_batch checked no window type, limit or explicit bound, and the cost
--   of only the first item of each call. It wrote rows of an unknown window type, rows whose end
--   was not after their start (also from an explicit end with a computed start), and negative
--   counts from a negative cost on a call's later item. A negative or NULL limit raised no error:
--   the call was rejected (or decided NULL) and its rows were created with count 0. A call that
--   listed a window type twice was charged twice against one check of the limit, so the count
--   could pass the limit. It now rejects all of these before it writes. A call is the items that
--   share a number in p_call.
-- * lease_tool_rate_tokens wrote the caller's bounds unchecked, so a row's end could be at or
--   before its start. It now requires every explicit start before its end, and p_window_starts and
--   p_window_ends both given or both NULL.
-- * return_tool_rate_tokens only updates existing rows, but it accepted unknown, NULL and repeated
--   window types and credited nothing for them. It now rejects them.
--
-- Each check runs in PL/pgSQL before the first write. On the common path of the consume
-- functions the checks of costs, limits and window types are one expression each, and the batch
-- function finds bad bounds and repeated types in the query that already computes the bounds. Only
-- when a check fails does a function look for the value to name in its error. The functions are
-- otherwise those of migrations 0004, 0007 and 0009. The tables do not change.

-- Migration 0007's function, whose common path also checks that the window types are distinct
-- and shortest first.
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
    v_known_types CONSTANT TEXT[] := ARRAY['minute', 'hour', 'day', 'week', 'month'];
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
    -- One expression checks the common case: a positive cost, valid limits, and distinct windows
    -- given shortest first that contain the instant. The types are in order when each one's
    -- position in minute, hour, day, week, month is after the one before it.
    IF p_cost >= 1 AND cardinality(p_limits) = v_windows AND 0 <= ALL (p_limits)
        AND cardinality(v_starts) = v_windows AND cardinality(v_ends) = v_windows
        AND v_at >= ALL (v_starts) AND v_at < ALL (v_ends)
        AND v_windows <= 5
        AND p_window_types <@ v_known_types
        AND (v_windows = 1
            OR array_position(v_known_types, p_window_types[1]) < array_position(v_known_types, p_window_types[2])
            AND (v_windows = 2
                OR array_position(v_known_types, p_window_types[2]) < array_position(v_known_types, p_window_types[3])
                AND (v_windows = 3
                    OR array_position(v_known_types, p_window_types[3]) < array_position(v_known_types, p_window_types[4])
                    AND (v_windows = 4
                        OR array_position(v_known_types, p_window_types[4]) < array_position(v_known_types, p_window_types[5])))))
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

-- Migration 0009's batch function, which checks every item's cost, limit, window type and bounds
-- before it writes, and that no call lists a window type twice.
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
    -- Whether some item's explicit bounds are unusable, and whether some call lists a window
    -- type twice.
    v_invalid_bounds BOOLEAN;
    v_repeated_types BOOLEAN;
    v_call INT;
    v_call_types TEXT[];
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

    -- One expression checks the common case: positive costs, valid limits and known window types.
    -- Only when it fails are the items checked one by one, to name the first invalid value.
    IF NOT coalesce(1 <= ALL (p_costs) AND 0 <= ALL (p_limits)
            AND p_window_types <@ ARRAY['minute', 'hour', 'day', 'week', 'month'], FALSE) THEN
        FOR v_index IN 1 .. v_items LOOP
            IF p_costs[v_index] IS NULL OR p_costs[v_index] < 1 THEN
                RAISE EXCEPTION 'invalid cost % of call %: a call costs at least 1 unit',
                    quote_nullable(p_costs[v_index]), p_call[v_index]
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            IF array_position(ARRAY['minute', 'hour', 'day', 'week', 'month'], p_window_types[v_index]) IS NULL THEN
                RAISE EXCEPTION 'invalid window type % of call %: expected minute, hour, day, week or month',
                    quote_nullable(p_window_types[v_index]), p_call[v_index]
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            IF p_limits[v_index] IS NULL OR p_limits[v_index] < 0 THEN
                RAISE EXCEPTION 'invalid % limit % of call %: expected 0 or more', p_window_types[v_index],
                    quote_nullable(p_limits[v_index]), p_call[v_index]
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
        END LOOP;
    END IF;

    -- Windows by the database clock, computed once per window type, time zone and week start. An
    -- item gives both bounds, with the start before the end, or neither. A call (the items of one
    -- number in p_call) lists each window type once. The same query finds the items that break
    -- these rules.
    WITH items AS (
        SELECT * FROM unnest(p_call, p_window_types, p_timezones, p_week_starts, p_window_starts, p_window_ends)
            WITH ORDINALITY AS i(call, kind, zone, week_start, start_at, end_at, ord)
    ), calendars AS (
        SELECT DISTINCT kind, zone, week_start FROM items WHERE start_at IS NULL
    ), bounds AS (
        SELECT c.kind, c.zone, c.week_start, b.window_start, b.window_end
        FROM calendars c, highway.window_bounds(c.kind, now(), c.zone, c.week_start) b
    )
    SELECT array_agg(coalesce(i.start_at, b.window_start) ORDER BY i.ord),
           array_agg(coalesce(i.end_at, b.window_end) ORDER BY i.ord),
           coalesce(bool_or((i.start_at IS NULL) <> (i.end_at IS NULL) OR i.end_at <= i.start_at), FALSE),
           count(DISTINCT (i.call, i.kind)) < count(*)
    INTO v_starts, v_ends, v_invalid_bounds, v_repeated_types
    FROM items i
    LEFT JOIN bounds b
        ON i.start_at IS NULL AND b.kind = i.kind AND b.zone = i.zone AND b.week_start = i.week_start;

    IF v_invalid_bounds THEN
        FOR v_index IN 1 .. v_items LOOP
            IF (p_window_starts[v_index] IS NULL) <> (p_window_ends[v_index] IS NULL)
                OR p_window_ends[v_index] <= p_window_starts[v_index] THEN
                RAISE EXCEPTION 'invalid % window bounds [%, %) of call %: expected a start before the end, or both NULL',
                    p_window_types[v_index], quote_nullable(p_window_starts[v_index]),
                    quote_nullable(p_window_ends[v_index]), p_call[v_index]
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
        END LOOP;
    END IF;
    IF v_repeated_types THEN
        SELECT i.call, array_agg(i.kind ORDER BY i.ord) INTO v_call, v_call_types
        FROM unnest(p_call, p_window_types) WITH ORDINALITY AS i(call, kind, ord)
        GROUP BY i.call
        HAVING count(DISTINCT i.kind) < count(*)
        ORDER BY min(i.ord)
        LIMIT 1;
        RAISE EXCEPTION 'invalid window types % of call %: expected distinct values among minute, hour, day, week and month',
            v_call_types, v_call
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

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

-- Migration 0009's lease function, which checks the caller's window bounds.
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
    IF (p_window_starts IS NULL) <> (p_window_ends IS NULL) THEN
        RAISE EXCEPTION 'invalid windows: p_window_starts is %, p_window_ends is %: expected both given or both NULL',
            quote_nullable(p_window_starts), quote_nullable(p_window_ends)
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
            IF p_window_starts[v_index] IS NULL OR p_window_ends[v_index] IS NULL
                OR p_window_ends[v_index] <= p_window_starts[v_index] THEN
                RAISE EXCEPTION 'invalid % window bounds [%, %): expected a start before the end',
                    v_kind, quote_nullable(p_window_starts[v_index]), quote_nullable(p_window_ends[v_index])
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
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

-- Migration 0004's function, which checks the window types.
--
-- Gives back p_tokens unused tokens of a lease to each of its windows that is still open at p_at
-- (now() when NULL). A window that has ended keeps its count: its tokens can no longer be used.
--
-- The caller must give back only tokens it will never admit, and each of them once: the function
-- cannot tell a lease's tokens from those of others. Returns the number of windows credited.
CREATE OR REPLACE FUNCTION highway.return_tool_rate_tokens(
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
    v_index INT;
BEGIN
    IF p_tokens IS NULL OR p_tokens < 1 THEN
        RAISE EXCEPTION 'invalid token count %: expected 1 or more', quote_nullable(p_tokens)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF cardinality(p_window_starts) IS DISTINCT FROM cardinality(p_window_types) THEN
        RAISE EXCEPTION 'invalid windows: p_window_types and p_window_starts must have the same length'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR v_index IN 1 .. coalesce(cardinality(p_window_types), 0) LOOP
        IF array_position(ARRAY['minute', 'hour', 'day', 'week', 'month'], p_window_types[v_index]) IS NULL
            OR array_position(p_window_types, p_window_types[v_index]) <> v_index THEN
            RAISE EXCEPTION 'invalid window types %: expected distinct values among minute, hour, day, week and month',
                p_window_types
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;

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
