#!/usr/bin/env bash
# Runs the store's single-call statement and the original's three calls in alternating pgbench
# turns on 10,000 spread keys, emptying both usage tables before each turn, and prints the calls
# per second of each turn and their ratio.
#
#   benches/pgbench/turns.sh DATABASE [CLIENTS] [SECONDS] [TURNS]
#
# DATABASE must have the crate's migrations and benches/seed_consume.sql applied (see
# BENCHMARKS.md). PGHOST, PGUSER and the other libpq variables choose the server. Set
# SYNCHRONOUS_COMMIT=off to measure without waiting for the disk. Set ROWS=present to give every
# key its rows for the current minute, hour and day in both tables before each turn, then vacuum
# and checkpoint, as `BENCH_KEYS=spread-counted cargo bench --bench store` does.
#
# pgbench connects without TLS unless PGSSLMODE is set, like the store and the original in
# `cargo bench --bench store`: TLS costs every round trip, and the original makes three per call.
set -euo pipefail
export PGSSLMODE=${PGSSLMODE:-disable}

database=${1:?usage: turns.sh DATABASE [CLIENTS] [SECONDS] [TURNS]}
clients=${2:-1}
seconds=${3:-2}
turns=${4:-4}
here=$(dirname "$0")
case "${ROWS:-emptied}" in
    present | emptied) ;;
    *) echo "ROWS=$ROWS is not a choice: set ROWS=present, or leave it unset for emptied tables" >&2; exit 2 ;;
esac
options="-c search_path=seed -c synchronous_commit=${SYNCHRONOUS_COMMIT:-on}"

fill_rows() {
    psql -d "$database" -q <<'SQL'
INSERT INTO highway.tool_rate_limit_usage
    (tenant_id, tool_name, scope_key, window_type, window_start, window_end, request_count)
SELECT 'acme', 'tools.email.send', 'k' || key, kind,
    date_trunc(kind, now()), date_trunc(kind, now()) + ('1 ' || kind)::interval, 1
FROM generate_series(1, 10000) AS key, unnest(ARRAY['minute', 'hour', 'day']) AS kind;
INSERT INTO seed.tool_rate_limit_usage
    (tenant_id, tool_name, scope_key, window_type, window_start, request_count)
SELECT 'acme', 'tools.email.send', 'k' || key, kind, date_trunc(kind, now()), 1
FROM generate_series(1, 10000) AS key, unnest(ARRAY['minute', 'hour', 'day']) AS kind;
VACUUM ANALYZE highway.tool_rate_limit_usage, seed.tool_rate_limit_usage;
CHECKPOINT;
SQL
}

calls_per_second() {
    psql -d "$database" -qc "TRUNCATE highway.tool_rate_limit_usage, seed.tool_rate_limit_usage"
    if [ "${ROWS:-}" = present ]; then
        fill_rows
    fi
    PGOPTIONS=$options pgbench -n -M prepared -T "$seconds" -c "$clients" -j "$clients" \
        -f "$here/$1.sql" "$database" | awk '/^tps/ { printf "%.0f", $3 }'
}

echo "clients $clients, $seconds s per turn, synchronous_commit ${SYNCHRONOUS_COMMIT:-on}, rows ${ROWS:-emptied}"
for turn in $(seq "$turns"); do
    ours=$(calls_per_second store_statement)
    theirs=$(calls_per_second original_calls)
    echo "turn $turn: store's statement $ours, original $theirs, ratio $(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.2f", a / b }')"
done
