-- psql script: the server's work for 10,000 calls, without round trips or commits. One PL/pgSQL
-- DO block runs the store's single-call statement for minute, hour and day windows on random keys
-- of 10,000. The statement is that of store_statement.sql without its limit checks and RETURNING,
-- since a DO block has no destination for returned rows. Another block calls the original function
-- once per window for each call. Each block is one transaction, so no commit waits for the disk.
-- Run with PGOPTIONS='-c search_path=seed' against a database with the crate's migrations and
-- benches/seed_consume.sql applied; psql prints each block's time.
TRUNCATE highway.tool_rate_limit_usage, seed.tool_rate_limit_usage;
\timing on
DO $$
DECLARE k int;
BEGIN
FOR i IN 1..10000 LOOP
k := 1 + (random()*9999)::int;
INSERT INTO highway.tool_rate_limit_usage AS u
    (tenant_id, tool_name, scope_key, window_type, window_start, window_end, request_count, last_updated)
SELECT 'acme', 'tools.email.send', 'k' || k, w.kind, w.start_at, w.end_at, 1::bigint, now()
FROM (VALUES
    ('minute', date_trunc('minute', now()), date_trunc('minute', now()) + interval '1 minute'),
    ('hour', date_trunc('hour', now()), date_trunc('hour', now()) + interval '1 hour'),
    ('day', date_trunc('day', now()), date_trunc('day', now()) + interval '1 day')
) AS w(kind, start_at, end_at)
ON CONFLICT (tenant_id, tool_name, scope_key, window_type, window_start)
DO UPDATE SET request_count = u.request_count + EXCLUDED.request_count, last_updated = EXCLUDED.last_updated;
END LOOP;
END $$;
DO $$
DECLARE k int;
BEGIN
FOR i IN 1..10000 LOOP
k := 1 + (random()*9999)::int;
PERFORM seed.consume_tool_rate_token('acme', 'tools.email.send', 'k' || k, 'minute', 1000000000);
PERFORM seed.consume_tool_rate_token('acme', 'tools.email.send', 'k' || k, 'hour', 1000000000);
PERFORM seed.consume_tool_rate_token('acme', 'tools.email.send', 'k' || k, 'day', 1000000000);
END LOOP;
END $$;
