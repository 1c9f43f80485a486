"""bench/backup driver (see run). Prints medians of `runs` runs."""
import os
import statistics
import subprocess
import sys
import time

BIN, WORK, NBLOBS, SIZE, RUNS = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
DATA = os.path.join(WORK, "data")


def sh(cmd, timeout=1800):
    return subprocess.run(cmd, shell=True, check=True, capture_output=True, text=True,
                          timeout=timeout)


CPU = []


def timed(cmd):
    """(seconds, bytes through the pipe, peak RSS KiB of the first command);
    the first command's user+sys CPU seconds go to CPU[-1]."""
    t = time.monotonic()
    p = sh(f"/usr/bin/time -f '%M %U %S' -o {WORK}/rss {cmd} | wc -c")
    dt = time.monotonic() - t
    rss, us, sy = open(f"{WORK}/rss").read().split()[-3:]
    CPU.append(float(us) + float(sy))
    return dt, int(p.stdout.strip()), int(rss)


def fill(n):
    sh(f"{BIN} testhook-blobs --data {DATA} --count {n} --size {SIZE} --batch 500 --quiet")


def full_backup():
    return timed(f"{BIN} backup --data {DATA} --out - 2>/dev/null")


sh(f"{BIN} init --data {DATA}")
# RSS at 10% of the blobs, then at all of them: flat means independent of count and size.
fill(NBLOBS // 10)
_, _, rss_small = full_backup()
fill(NBLOBS - NBLOBS // 10)
du = int(sh(f"du -sb {DATA}").stdout.split()[0])
full_backup()  # warm the page cache
sh(f"tar cf - -C {DATA} . | wc -c")
cv, tar, rss, ratio, cv_cpu, tar_cpu = [], [], [], [], [], []
for _ in range(RUNS):  # interleaved, so that both see the same machine load
    dt, n, r = full_backup()
    cv.append(n / dt / 1e6)
    cv_cpu.append(n / CPU[-1] / 1e6)
    rss.append(r)
    dt, n, _ = timed(f"tar cf - -C {DATA} .")
    tar.append(n / dt / 1e6)
    tar_cpu.append(n / CPU[-1] / 1e6)
    ratio.append(cv[-1] / tar[-1])
base = sh(f"{BIN} backup --data {DATA} --out {WORK}/base.tar").stdout.strip()
full_t = []
for _ in range(3):
    dt, _, _ = full_backup()
    full_t.append(dt)
os.unlink(f"{WORK}/base.tar")


def incremental(since):
    ts, rs = [], []
    for _ in range(RUNS):
        dt, n, r = timed(f"{BIN} backup --data {DATA} --out - --since {since} 2>/dev/null")
        ts.append(dt)
        rs.append(r)
    return statistics.median(ts), statistics.median(rs)


inc0_t, _ = incremental(base)  # nothing new: the fixed cost (snapshot, record)
new = max(1, NBLOBS // 100)
fill(new)
inc1_t, inc1_rss = incremental(base)
fill(4 * new)
inc5_t, _ = incremental(base)
m = statistics.median
print(f"data dir: {NBLOBS} blobs of {SIZE} B plaintext, {du / 1e6:.1f} MB on disk; median of {RUNS} runs")
print(f"casevault backup --out - : {m(cv):8.1f} MB/s   peak RSS {m(rss) / 1024:.1f} MiB")
print(f"tar cf - (same dir)      : {m(tar):8.1f} MB/s")
print(f"ratio casevault/tar      : {m(ratio) * 100:8.1f} %   (median of per-pair ratios; target >= 70 %)")
print(f"per CPU second (user+sys): casevault {m(cv_cpu):.0f} MB/s, tar {m(tar_cpu):.0f} MB/s"
      f" (load-independent view; casevault also SHA-256es every byte)")
print(f"peak RSS at {NBLOBS // 10} blobs : {rss_small / 1024:.1f} MiB; at {NBLOBS} blobs: {m(rss) / 1024:.1f} MiB")
print(f"full backup time         : {m(full_t) * 1000:8.0f} ms")
print(f"incremental, 0 new blobs : {inc0_t * 1000:8.0f} ms   (fixed cost: snapshot of the database, record)")
print(f"incremental, +{new} blobs (1%): {inc1_t * 1000:8.0f} ms   ({inc1_t / m(full_t) * 100:.1f} % of full; {(inc1_t - inc0_t) * 1000:.0f} ms above fixed)   peak RSS {inc1_rss / 1024:.1f} MiB")
print(f"incremental, +{5 * new} blobs (5%): {inc5_t * 1000:8.0f} ms   ({(inc5_t - inc0_t) * 1000:.0f} ms above fixed)")
