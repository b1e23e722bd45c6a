"""first_bytes.py COMMAND...: milliseconds from starting COMMAND to its first byte on
standard output (then stops it), the median of 5 runs."""
import statistics, subprocess, sys, time

samples = []
for _ in range(5):
    t = time.perf_counter()
    p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    first = p.stdout.read(1)
    samples.append((time.perf_counter() - t) * 1000)
    p.kill(); p.wait()
    assert first, "no output"
print(f"first bytes | median {statistics.median(samples):.1f} ms | runs {', '.join(f'{s:.1f}' for s in samples)}")
