-- Rate-limit policies and their usage counters.
--
-- Other Highway components read these tables too, so the column names are part of the interface.

CREATE SCHEMA IF NOT EXISTS highway;

-- The limits of one tool for one tenant. The tenant `default` holds the limits of tenants that have
-- no row of their own.
CREATE TABLE highway.tool_rate_limits (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id TEXT NOT NULL,
    tool_name TEXT NOT NULL,
    -- Which calls share one counter: everyone, each tenant, or each workflow run.
    limit_scope TEXT NOT NULL DEFAULT 'tenant',
    -- Static limits, used when there is no schedule. NULL means unlimited, 0 admits nothing.
    requests_per_minute INT,
    requests_per_hour INT,
    requests_per_day INT,
    -- The schedule in the TaskJuggler language, the resource whose availability applies, and the
    -- availability report computed from it.
    schedule_definition TEXT,
    schedule_resource TEXT,
    schedule_report JSONB,
    schedule_report_valid_until TIMESTAMPTZ,
    -- The IANA time zone whose calendar the day, week and month windows follow.
    timezone TEXT NOT NULL DEFAULT 'UTC',
    -- The first day of a week window, as an English weekday name.
    week_start TEXT NOT NULL DEFAULT 'monday',
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    -- Admit calls when the token store fails or times out.
    fail_open BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, tool_name),
    CONSTRAINT tool_rate_limits_scope_check
        CHECK (limit_scope IN ('global', 'tenant', 'workflow')),
    CONSTRAINT tool_rate_limits_limits_check
        CHECK (requests_per_minute >= 0 AND requests_per_hour >= 0 AND requests_per_day >= 0),
    CONSTRAINT tool_rate_limits_week_start_check
        CHECK (week_start IN ('monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday'))
);

CREATE INDEX idx_tool_rate_limits_lookup
    ON highway.tool_rate_limits (tenant_id, tool_name)
    WHERE enabled;

-- One counter per scope key and calendar window. A window is the half-open interval
-- [window_start, window_end) in the policy's time zone.
CREATE TABLE highway.tool_rate_limit_usage (
    tenant_id TEXT NOT NULL,
    tool_name TEXT NOT NULL,
    -- `global`, the tenant id or the workflow run id, as the policy's scope chooses.
    scope_key TEXT NOT NULL,
    window_type TEXT NOT NULL,
    window_start TIMESTAMPTZ NOT NULL,
    window_end TIMESTAMPTZ NOT NULL,
    request_count BIGINT NOT NULL DEFAULT 0,
    last_updated TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, tool_name, scope_key, window_type, window_start),
    CONSTRAINT tool_rate_limit_usage_window_type_check
        CHECK (window_type IN ('minute', 'hour', 'day', 'week', 'month')),
    CONSTRAINT tool_rate_limit_usage_window_check CHECK (window_end > window_start),
    CONSTRAINT tool_rate_limit_usage_count_check CHECK (request_count >= 0)
);

-- Cleanup deletes the windows that ended before a cutoff.
CREATE INDEX idx_tool_rate_limit_usage_cleanup
    ON highway.tool_rate_limit_usage (window_end);
