#!/usr/bin/env bash
# bench/serve.sh DB.sqlite: load on `ream serve` over loopback, bounded in time.
#   1. 20 concurrent downloads of 1M lineitem rows as CSV: each checked against the CLI's
#      output (sha256), wall time, the server's peak RSS;
#   2. a small report at a fixed 500 requests/s for 30 s (oha): errors, p50, p99;
#   3. time to the first byte of a download of all of lineitem (6M rows).
# Needs: a release build (cargo build --release -p ream-cli), curl, sha256sum, and oha
# (cargo install oha) for part 2.
set -uo pipefail
db=$1
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
ream=$root/target/release/ream
work=$(mktemp -d); trap 'kill "$server" 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$work/reports" "$work/out"
sqlite3 "$work/li1m.sqlite" "$(sed -n '/CREATE TABLE lineitem/,/;/p' "$root/../shared/bench/schema-sqlite.sql")"
sqlite3 "$work/li1m.sqlite" "ATTACH '$db' AS big; INSERT INTO lineitem SELECT * FROM big.lineitem LIMIT 1000000;"
printf 'report: lineitem_1m\nsource:\n  url: "sqlite:%s"\n  table: lineitem\n' "$work/li1m.sqlite" >"$work/reports/lineitem_1m.yaml"
printf 'report: lineitem_all\nsource:\n  url: "sqlite:%s"\n  table: lineitem\n' "$db" >"$work/reports/lineitem_all.yaml"
"$ream" demo --dir "$work/demo" --rows 20000 >/dev/null 2>&1
sed "s|sqlite:../demo.sqlite|sqlite:$work/demo/demo.sqlite|" "$work/demo/reports/sales_by_region.yaml" >"$work/reports/sales_by_region.yaml"
small="sales_by_region.json?start_date=2024-03-01&end_date=2024-03-03"

/usr/bin/time -f '%M' -o "$work/rss" "$ream" serve --listen 127.0.0.1:0 --reports "$work/reports" \
  --output-dir "$work/out" --max-runs 64 --grace-secs 2 2>"$work/log" &
server=$!
for _ in $(seq 100); do grep -q 'listening on' "$work/log" && break; sleep 0.1; done
addr=$(grep -o 'http://[0-9.:]*' "$work/log")
echo "server: $addr"

want=$("$ream" run "$work/reports/lineitem_1m.yaml" --format csv | sha256sum | cut -d' ' -f1)
start=$(date +%s.%N)
pids=()
for i in $(seq 20); do
  (curl -sf "$addr/reports/lineitem_1m.csv" | sha256sum | cut -d' ' -f1 >"$work/sum.$i") &
  pids+=($!)
done
wait "${pids[@]}"
end=$(date +%s.%N)
ok=0; for i in $(seq 20); do [[ $(cat "$work/sum.$i") == "$want" ]] && ok=$((ok + 1)); done
printf '20 x 1M-row CSV downloads: %d/20 byte-identical to the CLI, %.1f s wall, %.0f rows/s in all\n' \
  "$ok" "$(echo "$end - $start" | bc -l)" "$(echo "20000000 / ($end - $start)" | bc -l)"

if command -v oha >/dev/null; then
  oha -z 30s -q 500 -c 32 --no-tui "$addr/reports/$small" | grep -E 'Success rate|Requests/sec|50.00% in|99.00% in|99.90% in|^ *\[[0-9]{3}\] [0-9]+ responses|Error'
else
  echo "oha not installed (cargo install oha): skipping the 500 requests/s part"
fi

python3 - "$addr/reports/lineitem_all.csv" <<'EOF'
import sys, time, http.client, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
for i in range(3):
    t = time.perf_counter()
    c = http.client.HTTPConnection(u.hostname, u.port)
    c.request("GET", u.path)
    r = c.getresponse()
    r.read(1)
    print(f"time to first byte, 6M-row CSV download #{i + 1}: {(time.perf_counter() - t) * 1000:.1f} ms (status {r.status})")
    c.close()
EOF
sleep 1
# SIGTERM to ream (the child of time): it drains and exits, then time writes the peak.
pkill -TERM -P "$server"; wait "$server"
echo "server peak RSS: $(( $(cat "$work/rss") / 1024 )) MB"
