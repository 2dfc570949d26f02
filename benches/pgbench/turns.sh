#!/usr/bin/env bash
# Runs the store's single-call statement and the original's three calls in alternating pgbench
# turns on 10,000 spread keys, emptying both usage tables before each turn, and prints the calls
# per second of each turn and their ratio.
#
#   benches/pgbench/turns.sh DATABASE [CLIENTS] [SECONDS] [TURNS]
#
# DATABASE must have the crate's migrations and benches/seed_consume.sql applied (see
# BENCHMARKS.md). PGHOST, PGUSER and the other libpq variables choose the server. Set
# SYNCHRONOUS_COMMIT=off to measure without waiting for the disk.
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
options="-c search_path=seed -c synchronous_commit=${SYNCHRONOUS_COMMIT:-on}"

calls_per_second() {
    psql -d "$database" -qc "TRUNCATE highway.tool_rate_limit_usage, seed.tool_rate_limit_usage"
    PGOPTIONS=$options pgbench -n -M prepared -T "$seconds" -c "$clients" -j "$clients" \
        -f "$here/$1.sql" "$database" | awk '/^tps/ { printf "%.0f", $3 }'
}

echo "clients $clients, $seconds s per turn, synchronous_commit ${SYNCHRONOUS_COMMIT:-on}"
for turn in $(seq "$turns"); do
    ours=$(calls_per_second store_statement)
    theirs=$(calls_per_second original_calls)
    echo "turn $turn: store's statement $ours, original $theirs, ratio $(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.2f", a / b }')"
done
