#!/usr/bin/env bash
# bench/bursts.sh [FORMAT...]: peak RSS and time of a burst run against the number of
# bursts. The same 100,000 rows (SQLite, customers' lines, an index on
# (customer_id, line_id)) are burst into 1,000 customers of 100 lines and 20,000 of 5,
# with the statements spec of crates/ream-cli/tests/common/mod.rs (a sum, a count, a
# page footer); BURSTS="1000 100000" for other counts (at most 100,000: one line each).
# Prints `format | bursts | wall s | peak RSS MiB | files`.
# Build first: cargo build --release -p ream-cli
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
ream=${REAM:-$root/target/release/ream}
formats=("$@"); [[ ${#formats[@]} -gt 0 ]] || formats=(csv pdf)
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

make_db() { # customers: 100,000 lines over that many customers
  local customers=$1 dir=$work/$1
  mkdir -p "$dir"
  sqlite3 "$dir/lines.sqlite" <<SQL
CREATE TABLE lines (line_id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL,
  customer_name TEXT NOT NULL, email TEXT NOT NULL, amount INTEGER NOT NULL);
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 99999)
INSERT INTO lines SELECT i + 1, i % $customers + 1, 'Customer ' || (i % $customers + 1),
  'billing' || (i % $customers + 1) || '@customers.example', (i * 7919) % 100000 - 20000 FROM n;
CREATE INDEX lines_customer ON lines (customer_id, line_id);
SQL
  cat >"$dir/statements.yaml" <<'YAML'
report: statements
title: All statements
source:
  url: "sqlite:lines.sqlite"
  table: lines
  key: [line_id]
burst:
  by: customer_id
  to: "{email}"
  title: "Statement for {customer_name}"
  filename: "statement-{customer_id}.{format}"
page_footer: "Page {page} of {pages}"
variables:
  total: {sum: amount}
  lines: {count: "*"}
summary: "Total due: {total}"
YAML
}

counts=(${BURSTS:-1000 20000})
for customers in "${counts[@]}"; do make_db "$customers"; done
for format in "${formats[@]}"; do
  for customers in "${counts[@]}"; do
    dir=$work/$customers
    sed -i "s/{format}/$format/; s/statement-{customer_id}\.[a-z]*\"/statement-{customer_id}.$format\"/" "$dir/statements.yaml"
    rm -rf "$dir/out"
    t=$(mktemp)
    /usr/bin/time -f '%e %M' -o "$t" "$ream" run "$dir/statements.yaml" --format "$format" --burst-dir "$dir/out" \
      --progress never 2>"$work/err" || { echo "$format | $customers | failed: $(tail -2 "$work/err")"; continue; }
    read -r wall kb <"$t"; rm -f "$t"
    printf '%s | %s | %s s | %.1f MiB | %s files\n' "$format" "$customers" "$wall" "$(echo "$kb / 1024" | bc -l)" \
      "$(find "$dir/out" -type f | wc -l)"
  done
done
