-- Time zone names that PostgreSQL reads as time zone abbreviations.
--
-- In `AT TIME ZONE`, PostgreSQL looks a name up among the time zone abbreviations before the
-- zones, and its default abbreviations include CET, EET, MET and WET, fixed offsets without
-- summer time, and EST, HST and MST, fixed offsets where the zones of those names had others
-- before the 1960s. Since tzdata 2024b these zones are links to the zones below, and the token
-- store computes windows in Rust with the same data (chrono-tz), so the windows computed here
-- for such a name differed from the store's: in summer, the day of a CET policy started an hour
-- later here, and calls charged by the two computations went to two different day rows.
--
-- `highway.zone_rules` returns the zone whose rules a name stands for, and the two functions that
-- convert between local and universal time read the rules through it. The tables do not change,
-- and a policy keeps the name it was given. Counts charged before this migration to the windows
-- of such a name as an abbreviation stay in their rows but no longer count against the zone's
-- windows, so a window current at the upgrade may admit up to its limit again.

CREATE FUNCTION highway.zone_rules(p_timezone TEXT) RETURNS TEXT
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT CASE p_timezone
        WHEN 'CET' THEN 'Europe/Brussels'
        WHEN 'MET' THEN 'Europe/Brussels'
        WHEN 'EET' THEN 'Europe/Athens'
        WHEN 'WET' THEN 'Europe/Lisbon'
        WHEN 'EST' THEN 'America/Panama'
        WHEN 'MST' THEN 'America/Phoenix'
        WHEN 'HST' THEN 'Pacific/Honolulu'
        ELSE p_timezone
    END
$$;

-- Migration 0002's function, reading the zone through highway.zone_rules.
CREATE OR REPLACE FUNCTION highway.local_instant(p_local TIMESTAMP, p_timezone TEXT)
RETURNS TIMESTAMPTZ
LANGUAGE plpgsql STABLE STRICT AS $$
DECLARE
    v_zone TEXT := highway.zone_rules(p_timezone);
    v_instant TIMESTAMPTZ := p_local AT TIME ZONE v_zone;
    v_day_before TIMESTAMPTZ := v_instant - INTERVAL '1 day';
    v_offset_before INTERVAL :=
        (v_day_before AT TIME ZONE v_zone) - (v_day_before AT TIME ZONE 'UTC');
    v_earlier TIMESTAMPTZ := (p_local - v_offset_before) AT TIME ZONE 'UTC';
BEGIN
    IF v_earlier < v_instant AND (v_earlier AT TIME ZONE v_zone) = p_local THEN
        RETURN v_earlier;
    END IF;
    RETURN v_instant;
END $$;

-- Migration 0002's function, reading the zone through highway.zone_rules.
CREATE OR REPLACE FUNCTION highway.window_bounds(
    p_window_type TEXT,
    p_at TIMESTAMPTZ,
    p_timezone TEXT,
    p_week_start TEXT,
    OUT window_start TIMESTAMPTZ,
    OUT window_end TIMESTAMPTZ)
LANGUAGE plpgsql STABLE STRICT AS $$
DECLARE
    v_local TIMESTAMP := p_at AT TIME ZONE highway.zone_rules(p_timezone);
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
