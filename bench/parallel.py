#!/usr/bin/env python3
"""bench/parallel.py [DB] [ROUNDS]: ream's CSV export of TPC-H lineitem from PostgreSQL,
serial and with --parallel 2, 3 and 4, against `psql COPY`, alternating the tools for
ROUNDS rounds (default 5) so drift hits all. For each run it prints wall seconds, rows/s,
the client's CPU seconds (user + system), the server's CPU seconds and peak RSS:

  name | wall s | Mrows/s | client CPU s | server CPU s | CPU s per M rows (client, server) | RSS MB

The server's CPU is what its backends used: the postmaster's reaped children's time
(cutime + cstime in /proc/PID/stat), read before each run and after its last backend has
exited, so it counts every connection the run opened, however short-lived. Output goes to /dev/null (written in
place, as to any device). Then the median of each over the rounds.

Needs a local server (the postmaster's /proc entry); PGHOST/PGUSER as for psql (default
127.0.0.1, postgres). Build first: cargo build --release -p ream-cli
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

db = sys.argv[1] if len(sys.argv) > 1 else "tpch_sf1"
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
host = os.environ.get("PGHOST", "127.0.0.1")
user = os.environ.get("PGUSER", "postgres")
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ream = os.path.join(root, "target", "release", "ream")
url = f"postgres://{user}@{host}/{db}"
tick = os.sysconf("SC_CLK_TCK")


def postmaster_cpu():
    pid = subprocess.run(["pgrep", "-o", "-x", "postgres"], capture_output=True, text=True).stdout.split()[0]
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    # Fields after the name: state is [0]; utime [11], stime [12], cutime [13], cstime [14].
    return (int(fields[13]) + int(fields[14])) / tick


def rows():
    out = subprocess.run(["psql", "-XqtAc", "SELECT count(*) FROM lineitem", "-h", host, "-U", user, db],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def measure(cmd):
    with tempfile.NamedTemporaryFile("r") as t:
        before = postmaster_cpu()
        with open(os.devnull, "wb") as sink:
            done = subprocess.run(["/usr/bin/time", "-f", "%e %U %S %M", "-o", t.name] + cmd, stdout=sink,
                                  stderr=subprocess.PIPE)
        if done.returncode != 0:
            raise SystemExit(f"{cmd} failed: {done.stderr.decode()[-500:]}")
        # A backend's time reaches the postmaster once it has exited and been reaped,
        # after its client has gone: wait until none of ours is left, then a moment.
        while int(subprocess.run(["psql", "-XqtAc", "SELECT count(*) FROM pg_stat_activity WHERE "
                                  "application_name = 'ream' OR (backend_type = 'client backend' AND "
                                  "query LIKE 'COPY lineitem%')", "-h", host, "-U", user, db],
                                 capture_output=True, text=True).stdout.strip() or 0) > 0:
            time.sleep(0.05)
        time.sleep(0.3)
        server = postmaster_cpu() - before
        wall, usr, sys_, kb = t.read().split()
    return float(wall), float(usr) + float(sys_), server, int(kb) // 1024


n = rows()
tools = [("psql COPY csv", ["psql", "-Xq", "-h", host, "-U", user, "-c", "COPY lineitem TO STDOUT (FORMAT csv, HEADER)", db])]
for parts in [1, 2, 3, 4]:
    extra = [] if parts == 1 else ["--parallel", str(parts)]
    name = "ream csv serial" if parts == 1 else f"ream csv --parallel {parts}"
    tools.append((name, [ream, "run", "--source", url, "--table", "lineitem", "-f", "csv", "-o", "/dev/null",
                         "--progress", "never"] + extra))
results = {name: [] for name, _ in tools}
for r in range(rounds):
    print(f"# round {r + 1}", flush=True)
    for name, cmd in tools:
        wall, client, server, rss = measure(cmd)
        results[name].append((wall, client, server, rss))
        print(f"{name} | {wall:.2f} s | {n / wall / 1e6:.2f} | {client:.2f} | {server:.2f} | "
              f"{client / n * 1e6:.2f}, {server / n * 1e6:.2f} | {rss}", flush=True)
print(f"# medians of {rounds} rounds, {n} rows")
base = statistics.median(w for w, *_ in results["psql COPY csv"])
for name, runs in results.items():
    wall, client, server, rss = (statistics.median(x[i] for x in runs) for i in range(4))
    print(f"{name} | {wall:.2f} s | {n / wall / 1e6:.2f} Mrows/s | {base / wall:.2f}x psql | client {client:.2f} s | "
          f"server {server:.2f} s | per M rows {client / n * 1e6:.2f} + {server / n * 1e6:.2f} s | {rss} MB")
