-- pgbench script: the original design's function called once per window, minute, hour and day,
-- on one of 10,000 spread keys: three statements, three transactions. Run with
-- PGOPTIONS='-c search_path=seed' against a database with benches/seed_consume.sql applied.
\set k random(1, 10000)
SELECT seed.consume_tool_rate_token('acme', 'tools.email.send', 'k' || :k, 'minute', 1000000000);
SELECT seed.consume_tool_rate_token('acme', 'tools.email.send', 'k' || :k, 'hour', 1000000000);
SELECT seed.consume_tool_rate_token('acme', 'tools.email.send', 'k' || :k, 'day', 1000000000);
