#!/usr/bin/env bash
# Issue 16's figures, on PostgreSQL and SeaweedFS (the S3 server .ci/run starts on
# 127.0.0.1:8333 with the bucket `ream-test`):
#  1. 20 concurrent 1M-row async exports through two `ream serve` instances sharing a
#     PostgreSQL control database, to SeaweedFS: peak RSS per instance, and every output
#     checked against the CLI's (sha256);
#  2. a cache hit against the query, for the same 1M-row output;
#  3. queue claim latency, two claimers and 200 queued runs (target/release/claim-latency).
# Usage (from the repository): cargo build --release -p ream-cli -p ream-bench && bash bench/instances.sh
set -euo pipefail
ream=${REAM:-target/release/ream}
rows=${ROWS:-1000000}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for d in ream_bench_src ream_bench_control ream_bench_claims; do
    psql -h 127.0.0.1 -U postgres -q -c "DROP DATABASE IF EXISTS $d WITH (FORCE)" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
pg() { psql -h 127.0.0.1 -U postgres -q -v ON_ERROR_STOP=1 "$@"; }
for d in ream_bench_src ream_bench_control ream_bench_claims; do
  pg -c "DROP DATABASE IF EXISTS $d WITH (FORCE)" && pg -c "CREATE DATABASE $d"
done
pg -d ream_bench_src -c "CREATE TABLE t (id int8 PRIMARY KEY, name text, amount numeric(12,2), day date);
  INSERT INTO t SELECT i, 'customer ' || (i % 5000), (i % 100000) / 100.0, DATE '2024-01-01' + (i % 365)
  FROM generate_series(1, $rows) i; ANALYZE t;"
src=postgres://postgres@127.0.0.1:5432/ream_bench_src
mkdir -p "$work/reports"
cat >"$work/reports/big.yaml" <<YAML
report: big
source:
  url: "$src"
  table: t
  key: [id]
  where: "id >= :from"
parameters:
  from: {type: int, default: 1}
YAML
sed 's/^report: big/report: cached/' "$work/reports/big.yaml" >"$work/reports/cached.yaml"
printf 'cache:\n  ttl: 10m\n  max_bytes: 1GiB\n' >>"$work/reports/cached.yaml"
# A summary over the same rows: one line per day (365), the work is in the query.
cat >"$work/reports/by_day.yaml" <<YAML
report: by_day
source:
  url: "$src"
  table: t
  key: [id]
detail: false
groups:
  - by: day
variables:
  total: { sum: amount, reset: day }
cache:
  ttl: 10m
YAML

export AWS_ACCESS_KEY_ID=ream-test AWS_SECRET_ACCESS_KEY=ream-test-secret-key AWS_REGION=us-east-1
store=s3://ream-test/bench-$$
start() {
  "$ream" serve --listen 127.0.0.1:0 --reports "$work/reports" --data-dir "$work/data-$1" \
    --control postgres://postgres@127.0.0.1:5432/ream_bench_control \
    --output-store "$store" --s3-endpoint http://127.0.0.1:8333 --max-runs 10 >/dev/null 2>"$work/$1.log" &
  pids+=($!)
  for _ in $(seq 100); do grep -q "listening on" "$work/$1.log" && break; sleep 0.1; done
}
start a
start b
a=$(sed -n 's/^ream: listening on //p' "$work/a.log")
b=$(sed -n 's/^ream: listening on //p' "$work/b.log")
echo "instances: $a (pid ${pids[0]}), $b (pid ${pids[1]})"

# 1. 20 concurrent exports, each its own (from = 1..20), posted alternately to A and B.
t0=$(date +%s.%N)
ids=()
for i in $(seq 1 20); do
  base=$([[ $((i % 2)) == 0 ]] && echo "$a" || echo "$b")
  ids+=("$(curl -sf -H 'content-type: application/json' -d "{\"report\": \"big\", \"format\": \"csv\", \"parameters\": {\"from\": $i}}" "$base/runs" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')")
done
for id in "${ids[@]}"; do
  while :; do
    s=$(curl -sf "$a/runs/$id" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
    [[ $s == succeeded ]] && break
    [[ $s == failed || $s == cancelled ]] && { echo "run $id $s"; exit 1; }
    sleep 0.5
  done
done
t1=$(date +%s.%N)
hwm() { awk '/VmHWM/ {printf "%.0f MB", $2 / 1024}' "/proc/$1/status"; }
echo "20 exports of ~$rows rows: $(python3 -c "print(round($t1 - $t0, 1))") s; peak RSS A $(hwm "${pids[0]}"), B $(hwm "${pids[1]}")"
ok=0
for i in $(seq 1 20); do
  want=$("$ream" run "$work/reports/big.yaml" -p "from=$i" --format csv | sha256sum | cut -d' ' -f1)
  code=$(curl -s -o "$work/out" -w '%{http_code}' "$b/runs/${ids[$((i - 1))]}/output")
  got=$(sha256sum <"$work/out" | cut -d' ' -f1)
  [[ $code == 200 && $want == "$got" ]] && ok=$((ok + 1)) ||
    echo "run ${ids[$((i - 1))]}: HTTP $code, the output differs from the CLI's: $(head -c 300 "$work/out")"
done
echo "outputs identical to the CLI's: $ok/20"
by=$(curl -sf "$a/runs" | python3 -c 'import collections,json,sys; print(dict(collections.Counter(r["instance"].rsplit("-",2)[1] for r in json.load(sys.stdin)["runs"] if r["report"] == "big")))')
echo "runs per instance (by pid): $by"

# 2. A cache hit against the query, for the same output (1M rows as CSV).
timed() { curl -s -o /dev/null -w '%{time_total} %{size_download} %header{x-ream-cache}\n' "$@"; }
echo "cache: query (miss): $(timed "$a/reports/cached.csv")"
for n in 1 2 3; do echo "cache: hit $n: $(timed "$a/reports/cached.csv")"; done
echo "cache: query again (no-cache): $(timed -H 'cache-control: no-cache' "$a/reports/cached.csv")"
echo "cache, summary of 1M rows: query (miss): $(timed "$a/reports/by_day.csv")"
for n in 1 2 3; do echo "cache, summary: hit $n: $(timed "$a/reports/by_day.csv")"; done

# 3. Claim latency: 200 queued runs, two claimers, on PostgreSQL and on SQLite.
target/release/claim-latency postgres://postgres@127.0.0.1:5432/ream_bench_claims 200 2
target/release/claim-latency "sqlite:$work/claims.sqlite" 200 1
