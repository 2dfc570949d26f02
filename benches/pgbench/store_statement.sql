-- pgbench script: the store's single-call statement for minute, hour and day windows, on one of
-- 10,000 spread keys, with limits no run reaches. It differs from the statement that
-- src/store/postgres/fast.rs builds for three windows in two ways: the bounds are computed here
-- from now() instead of passed as parameters, and the check that they contain now() is left out,
-- since they always do. Run against a database with the crate's migrations applied
-- (benches/pgbench/turns.sh runs it).
\set k random(1, 10000)
INSERT INTO highway.tool_rate_limit_usage AS u
    (tenant_id, tool_name, scope_key, window_type, window_start, window_end, request_count,
     last_updated)
SELECT 'acme', 'tools.email.send', 'k' || :k, w.kind, w.start_at, w.end_at, 1::bigint, now()
FROM (VALUES
    ('minute', date_trunc('minute', now()), date_trunc('minute', now()) + interval '1 minute'),
    ('hour', date_trunc('hour', now()), date_trunc('hour', now()) + interval '1 hour'),
    ('day', date_trunc('day', now()), date_trunc('day', now()) + interval '1 day')
) AS w(kind, start_at, end_at)
WHERE CASE
    WHEN 1::bigint <= ALL ('{1000000000,1000000000,1000000000}'::bigint[]) THEN TRUE
    ELSE highway.rollback_fast_consume()
END
ON CONFLICT (tenant_id, tool_name, scope_key, window_type, window_start)
DO UPDATE SET
    request_count = u.request_count + EXCLUDED.request_count,
    last_updated = EXCLUDED.last_updated
WHERE CASE
    WHEN u.request_count
        <= ('{1000000000,1000000000,1000000000}'::bigint[])[array_position('{minute,hour,day}'::text[], u.window_type)]
            - EXCLUDED.request_count
        THEN TRUE
    ELSE highway.rollback_fast_consume()
END
RETURNING u.window_type, u.request_count;
