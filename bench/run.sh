#!/usr/bin/env bash
# bench/run.sh DB.sqlite [SECTION...]: time ream against the bare read loop and the peer
# tools on TPC-H lineitem, in one run on one machine. Prints
#   name | wall seconds | peak RSS MB | output bytes | rows/s | CPU seconds (user + sys)
# Sections: bare csv ndjson memory first-bytes q1 charts xlsx pdf peers (sqlite3 and DuckDB via
# ../shared/bench/peers.sh). Build first: cargo build --release -p ream-cli -p ream-bench
set -uo pipefail
db=$1; shift
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
ream=${REAM:-$root/target/release/ream}
bare=$root/target/release/bare-sqlite
peers=${PEERS:-$root/../shared/bench/peers.sh}
rows=$(sqlite3 "$db" "SELECT count(*) FROM lineitem")
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
measure() { # name command... ; output to $out/o
  local name=$1; shift; local t; t=$(mktemp)
  /usr/bin/time -f '%e %M %U %S' -o "$t" "$@" >/dev/null 2>"$out/err" || { echo "$name | failed: $(tail -2 "$out/err")"; return; }
  read -r wall kb user sys <"$t"; rm -f "$t"
  local bytes; bytes=$(stat -c %s "$out/o" 2>/dev/null || echo 0); rm -f "$out/o"
  printf '%s | %s s | %s MB | %s bytes | %.0f rows/s | cpu %.2f s\n' "$name" "$wall" "$((kb / 1024))" "$bytes" \
    "$(echo "$rows / $wall" | bc -l)" "$(echo "$user + $sys" | bc -l)"
}
measure_pdf() { # name source: bench/lineitem_pdf.yaml as PDF, with its pages and pages/s
  local t; t=$(mktemp)
  /usr/bin/time -f '%e %M %U %S' -o "$t" ${PIN:-} "$ream" run "$here/lineitem_pdf.yaml" --source "$2" -o "$out/o.pdf" 2>"$out/err" \
    || { echo "$1 | failed: $(tail -2 "$out/err")"; return; }
  read -r wall kb user sys <"$t"; rm -f "$t"
  local pages; pages=$(pdfinfo "$out/o.pdf" | awk '/^Pages:/ {print $2}')
  printf '%s | %s s | %s MB | %s bytes | %.0f rows/s | %s pages | %.0f pages/s | cpu %.2f s\n' "$1" "$wall" "$((kb / 1024))" \
    "$(stat -c %s "$out/o.pdf")" "$(echo "$rows / $wall" | bc -l)" "$pages" "$(echo "$pages / $wall" | bc -l)" "$(echo "$user + $sys" | bc -l)"
  rm -f "$out/o.pdf"
}
small=$out/lineitem-100k.sqlite
make_small() {
  [[ -s $small ]] && return
  sqlite3 "$small" <"$root/../shared/bench/schema-sqlite.sql" >/dev/null 2>&1 || sqlite3 "$small" "$(sed -n '/CREATE TABLE lineitem/,/;/p' "$root/../shared/bench/schema-sqlite.sql")"
  sqlite3 "$small" "ATTACH '$db' AS big; INSERT INTO lineitem SELECT * FROM big.lineitem LIMIT 100000;"
}
secs=("$@"); [[ ${#secs[@]} -gt 0 ]] || secs=(bare csv ndjson peers memory first-bytes q1)
for s in "${secs[@]}"; do case $s in
  bare)   measure "bare rusqlite loop" "$bare" "$db" lineitem ;;
  csv)    measure "ream csv (file)" "$ream" run --source "sqlite:$db" --table lineitem --format csv -o "$out/o"
          measure "ream csv (stdout)" sh -c "'$ream' run --source 'sqlite:$db' --table lineitem > '$out/o'" ;;
  ndjson) measure "ream ndjson" sh -c "'$ream' run --source 'sqlite:$db' --table lineitem --format ndjson > '$out/o'" ;;
  peers)  "$peers" "$db" none sqlite3-csv sqlite3-json duckdb-csv duckdb-json q1-sqlite ;;
  memory) make_small
          measure "ream csv 100k rows" sh -c "'$ream' run --source 'sqlite:$small' --table lineitem > '$out/o'"
          measure "ream csv 6M rows" sh -c "'$ream' run --source 'sqlite:$db' --table lineitem > '$out/o'" ;;
  first-bytes) python3 "$here/first_bytes.py" "$ream" run --source "sqlite:$db" --table lineitem ;;
  q1)     measure "ream q1 report" sh -c "'$ream' run '$here/tpch_q1.yaml' --source 'sqlite:$db' --format csv > '$out/o'"
          measure "sqlite3 q1" sh -c "sqlite3 '$db' '.read $root/../shared/bench/q1.sql' > '$out/o'" ;;
  charts) # The same summary report with and without its four charts, alternating, then
          # the same on one core (taskset), where the chart work cannot overlap the read.
          sed '/^charts:/,$d' "$here/lineitem_charts.yaml" >"$out/plain.yaml"
          sed '/^  - id: quantity_by_flag/,$d' "$here/lineitem_charts.yaml" >"$out/one.yaml"
          for pin in "" "taskset -c 0"; do for round in 1 2 3; do
            measure "ream no chart ${pin:+(1 core) }#$round" $pin "$ream" run "$out/plain.yaml" --source "sqlite:$db" --format json -o "$out/o"
            measure "ream 1 chart ${pin:+(1 core) }#$round" $pin "$ream" run "$out/one.yaml" --source "sqlite:$db" --format json -o "$out/o"
            measure "ream 4 charts ${pin:+(1 core) }#$round" $pin "$ream" run "$here/lineitem_charts.yaml" --source "sqlite:$db" --format json -o "$out/o"
          done; done ;;
  xlsx)   # 1M rows as XLSX, ream then XlsxWriter (constant_memory) then ream again, on the
          # same 1M-row copy of lineitem, with the same cell types (bench/lineitem_xlsx.yaml
          # reads the three dates as dates, as peer_xlsxwriter.py writes them).
          m=$out/lineitem-1m.sqlite
          sqlite3 "$m" "$(sed -n '/CREATE TABLE lineitem/,/;/p' "$root/../shared/bench/schema-sqlite.sql")"
          sqlite3 "$m" "ATTACH '$db' AS big; INSERT INTO lineitem SELECT * FROM big.lineitem LIMIT 1000000;"
          make_small; rows=100000
          measure "ream xlsx 100k rows" "$ream" run "$here/lineitem_xlsx.yaml" --source "sqlite:$small" --xlsx-flat --format xlsx -o "$out/o"
          rows=1000000
          measure "ream xlsx 1M rows" "$ream" run "$here/lineitem_xlsx.yaml" --source "sqlite:$m" --xlsx-flat --format xlsx -o "$out/o"
          measure "XlsxWriter 1M rows" "${PY:-$root/../bench-data/venv/bin/python}" "$root/../shared/bench/peer_xlsxwriter.py" "$m" 1000000 "$out/o"
          measure "ream xlsx 1M rows (again)" "$ream" run "$here/lineitem_xlsx.yaml" --source "sqlite:$m" --xlsx-flat --format xlsx -o "$out/o"
          rows=$(sqlite3 "$db" "SELECT count(*) FROM lineitem")
          measure "ream xlsx 6M rows" "$ream" run "$here/lineitem_xlsx.yaml" --source "sqlite:$db" --xlsx-flat --format xlsx -o "$out/o" ;;
  pdf)    # A PDF table of lineitem (bench/lineitem_pdf.yaml, the columns and formats of
          # peer_reportlab.py): ream, ReportLab, ream again on the same 100k rows; then
          # ream alone on 1M and 6M rows, with pages per second. PIN="taskset -c 0" runs
          # them all on one core (so other work can use the other).
          make_small; rows=100000
          measure_pdf "ream pdf 100k rows" "sqlite:$small"
          measure "ReportLab 100k rows" ${PIN:-} "${PY:-$root/../bench-data/venv/bin/python}" "$root/../shared/bench/peer_reportlab.py" "$db" 100000 "$out/o"
          measure_pdf "ream pdf 100k rows (again)" "sqlite:$small"
          m=$out/lineitem-1m.sqlite; rows=1000000
          [[ -s $m ]] || { sqlite3 "$m" "$(sed -n '/CREATE TABLE lineitem/,/;/p' "$root/../shared/bench/schema-sqlite.sql")"
                           sqlite3 "$m" "ATTACH '$db' AS big; INSERT INTO lineitem SELECT * FROM big.lineitem LIMIT 1000000;"; }
          measure_pdf "ream pdf 1M rows" "sqlite:$m"
          rows=$(sqlite3 "$db" "SELECT count(*) FROM lineitem")
          measure_pdf "ream pdf 6M rows" "sqlite:$db" ;;
  *) echo "unknown section $s" ;;
esac; done
