#!/usr/bin/env bash
# bench/mysql.sh [DB] [ROUNDS]: ream against the mariadb client on TPC-H lineitem in
# MariaDB/MySQL (database DB, default tpch_sf1, loaded from tpch-setup.sh's CSV with
# LOAD DATA; see BENCHMARKS.md), alternating for ROUNDS rounds (default 2). Prints
#   name | wall seconds | peak RSS MB | output bytes
# Build first: cargo build --release -p ream-cli
set -uo pipefail
db=${1:-tpch_sf1}; rounds=${2:-2}
host=${MYSQL_HOST:-127.0.0.1}; user=${MYSQL_USER:-root}
root=$(cd "$(dirname "$0")/.." && pwd)
ream=$root/target/release/ream
url="mysql://$user@$host:3306/$db"
my() { mariadb -h"$host" -u"$user" "$@"; }
out=$(mktemp -d); trap 'rm -rf "$out"; my "$db" -e "DROP TABLE IF EXISTS lineitem_100k" 2>/dev/null' EXIT
measure() {
  local name=$1; shift; local t; t=$(mktemp)
  /usr/bin/time -f '%e %M' -o "$t" "$@" >"$out/o" 2>"$out/err" || { echo "$name | failed: $(tail -2 "$out/err")"; return; }
  read -r wall kb <"$t"; rm -f "$t"
  printf '%s | %s s | %s MB | %s bytes\n' "$name" "$wall" "$((kb / 1024))" "$(stat -c %s "$out/o")"
  rm -f "$out/o"
}
my "$db" -e "DROP TABLE IF EXISTS lineitem_100k; CREATE TABLE lineitem_100k LIKE lineitem; INSERT INTO lineitem_100k SELECT * FROM lineitem ORDER BY l_orderkey, l_linenumber LIMIT 100000"
for r in $(seq "$rounds"); do
  echo "# round $r"
  measure "mariadb --batch --quick" mariadb -h"$host" -u"$user" --batch --quick -e "SELECT * FROM lineitem" "$db"
  measure "ream csv (auto: cursor, one snapshot)" "$ream" run --source "$url" --table lineitem -f csv
  measure "ream csv (keyset, --no-snapshot)" "$ream" run --source "$url" --table lineitem -f csv --strategy keyset --no-snapshot
  measure "ream ndjson" "$ream" run --source "$url" --table lineitem -f ndjson
  measure "ream csv 100k rows (RSS)" "$ream" run --source "$url" --table lineitem_100k -f csv
done
