-- The original design's usage table and token function, for comparison: one call per window, so a
-- minute+hour+day limit costs three round trips and three transactions. Created in its own schema;
-- the function's unqualified table name resolves through search_path.

CREATE SCHEMA seed;

CREATE TABLE seed.tool_rate_limit_usage (
    tenant_id TEXT NOT NULL,
    tool_name TEXT NOT NULL,
    scope_key TEXT NOT NULL,
    window_type TEXT NOT NULL,
    window_start TIMESTAMPTZ NOT NULL,
    request_count INT DEFAULT 0,
    last_updated TIMESTAMPTZ DEFAULT NOW(),
    PRIMARY KEY (tenant_id, tool_name, scope_key, window_type, window_start)
);

CREATE INDEX idx_seed_tool_rate_limit_usage_cleanup ON seed.tool_rate_limit_usage (window_start);

CREATE OR REPLACE FUNCTION seed.consume_tool_rate_token(p_tenant_id TEXT, p_tool_name TEXT, p_scope_key TEXT, p_window_type TEXT, p_limit INT) RETURNS BOOLEAN AS $$
DECLARE v_window_start TIMESTAMPTZ; v_current_count INT;
BEGIN
  v_window_start := CASE p_window_type WHEN 'minute' THEN date_trunc('minute', NOW()) WHEN 'hour' THEN date_trunc('hour', NOW()) WHEN 'day' THEN date_trunc('day', NOW()) END;
  INSERT INTO tool_rate_limit_usage (tenant_id, tool_name, scope_key, window_type, window_start, request_count)
  VALUES (p_tenant_id, p_tool_name, p_scope_key, p_window_type, v_window_start, 1)
  ON CONFLICT (tenant_id, tool_name, scope_key, window_type, window_start)
  DO UPDATE SET request_count = tool_rate_limit_usage.request_count + 1, last_updated = NOW()
  WHERE tool_rate_limit_usage.request_count < p_limit
  RETURNING request_count INTO v_current_count;
  RETURN v_current_count IS NOT NULL;
END; $$ LANGUAGE plpgsql;
