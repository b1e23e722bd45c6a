#!/usr/bin/env bash
# bench/pg.sh [DB] [ROUNDS]: ream against psql COPY on TPC-H lineitem in PostgreSQL
# (database DB, default tpch_sf1, from ../shared/bench/tpch-setup.sh), alternating the
# tools for ROUNDS rounds (default 3) so drift hits both. Prints
#   name | wall seconds | peak RSS MB | output bytes
# PGHOST/PGUSER as for psql (default 127.0.0.1, postgres). Build first:
#   cargo build --release -p ream-cli
set -uo pipefail
db=${1:-tpch_sf1}; rounds=${2:-3}
export PGHOST=${PGHOST:-127.0.0.1} PGUSER=${PGUSER:-postgres}
root=$(cd "$(dirname "$0")/.." && pwd)
ream=$root/target/release/ream
url="postgres://$PGUSER@$PGHOST/$db"
out=$(mktemp -d); trap 'rm -rf "$out"; psql -Xq -d "$db" -c "DROP TABLE IF EXISTS lineitem_100k" 2>/dev/null' EXIT
measure() { # name command... (writes $out/o)
  local name=$1; shift; local t; t=$(mktemp)
  /usr/bin/time -f '%e %M' -o "$t" "$@" >"$out/o" 2>"$out/err" || { echo "$name | failed: $(tail -2 "$out/err")"; return; }
  read -r wall kb <"$t"; rm -f "$t"
  printf '%s | %s s | %s MB | %s bytes\n' "$name" "$wall" "$((kb / 1024))" "$(stat -c %s "$out/o")"
  rm -f "$out/o"
}
psql -Xq -d "$db" -c "DROP TABLE IF EXISTS lineitem_100k; CREATE TABLE lineitem_100k AS SELECT * FROM lineitem ORDER BY l_orderkey, l_linenumber LIMIT 100000; ALTER TABLE lineitem_100k ADD PRIMARY KEY (l_orderkey, l_linenumber); ANALYZE lineitem_100k"
for r in $(seq "$rounds"); do
  echo "# round $r"
  measure "psql COPY csv" psql -Xqc "COPY lineitem TO STDOUT (FORMAT csv, HEADER)" "$db"
  measure "ream csv (auto: cursor, one snapshot)" "$ream" run --source "$url" --table lineitem -f csv
  measure "ream csv (cursor, --no-snapshot)" "$ream" run --source "$url" --table lineitem -f csv --strategy cursor --no-snapshot
  measure "ream csv (keyset, one snapshot)" "$ream" run --source "$url" --table lineitem -f csv --strategy keyset
  measure "ream csv (keyset, --no-snapshot)" "$ream" run --source "$url" --table lineitem -f csv --strategy keyset --no-snapshot
  measure "psql COPY row_to_json" psql -Xqc "COPY (SELECT row_to_json(l) FROM lineitem l) TO STDOUT" "$db"
  measure "ream ndjson" "$ream" run --source "$url" --table lineitem -f ndjson
  measure "ream csv 100k rows (RSS)" "$ream" run --source "$url" --table lineitem_100k -f csv
  measure "psql TPC-H Q1" psql -Xq -f "$root/../shared/bench/q1.sql" "$db"
  measure "ream TPC-H Q1 report (csv)" "$ream" run "$root/bench/tpch_q1.yaml" --source "$url" -f csv
done
echo "# first bytes (median of 5)"
echo "ream: $(python3 "$root/bench/first_bytes.py" "$ream" run --source "$url" --table lineitem -f csv)"
echo "psql: $(python3 "$root/bench/first_bytes.py" psql -Xqc "COPY lineitem TO STDOUT (FORMAT csv)" "$db")"
