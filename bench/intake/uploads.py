"""bench/intake part (b): end-to-end uploads against a real `casevault serve`.

N uploads (PUT /v1/cases/{id}/documents/id_in_hand) of one real phone photo
at a bounded concurrency C: each upload streams the body into an encrypted
staging blob, normalizes it in a sandboxed worker, stores the normalized
blob and commits the row and its audit entry. Prints per concurrency the
median over RUNS runs of: uploads/s (N / wall time), p50 and p99 latency
(ms), and peak RSS of the server and its decoder processes together
(MiB: the sum over the server and every descendant of Rss, and of Pss,
which counts pages shared by the forked processes once, sampled every
10 ms from /proc/PID/smaps_rollup; workers are one-shot, so the sum of
VmHWM would miss the exited ones), and CPU ms per upload (server, helper and workers, user + system,
sampled per process every 10 ms as the workers are reaped without
accounting: the figure that does not depend on what else the machine runs).
A failed upload is counted and printed; the target is 0.
"""
import argparse
import concurrent.futures
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time

import requests

IDENT = {"name": "测试 甲", "id_type": "cn_resident_id", "id_number": "110105199003071239"}


def descendants(root):
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        ppid = int(st[st.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def mem_kib(pid):
    """(Rss, Pss) of one process in KiB from smaps_rollup (0, 0 if it is gone)."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def cpu_ticks(pid):
    """utime + stime of one process in clock ticks (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
    except OSError:
        return 0
    v = st[st.rindex(")") + 2:].split()
    return int(v[11]) + int(v[12])


class Sampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.peak_pss, self.stop = pid, 0, 0, threading.Event()
        self.base = {p: cpu_ticks(p) for p in descendants(pid)}
        self.ticks = dict(self.base)

    def cpu_s(self):
        """CPU seconds of the server, helper and every worker seen since start
        (workers are sampled while they live: their last 10 ms may be missed)."""
        return (sum(self.ticks.values()) - sum(self.base.values())) / os.sysconf("SC_CLK_TCK")

    def run(self):
        while not self.stop.is_set():
            pids = descendants(self.pid)
            for p in pids:
                self.ticks[p] = max(self.ticks.get(p, 0), cpu_ticks(p))
            m = [mem_kib(p) for p in pids]
            self.peak = max(self.peak, sum(x[0] for x in m))
            self.peak_pss = max(self.peak_pss, sum(x[1] for x in m))
            time.sleep(0.01)


def start(binary, data, extra):
    p = subprocess.Popen([binary, "serve", "--data", data, "--listen", "127.0.0.1:0", *extra],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    for line in p.stderr:
        try:
            j = json.loads(line)
        except ValueError:
            continue
        if j.get("msg") == "listening":
            threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
            return p, j["url"]
        if time.monotonic() - t0 > 30:
            break
    p.kill()
    raise SystemExit("server did not start")


def cli(binary, *args):
    return subprocess.run([binary, *args], capture_output=True, text=True, check=True,
                          timeout=60).stdout.strip()


def one_run(binary, photo, n, conc, extra):
    data = tempfile.mkdtemp(prefix="cv-bench-up-")
    try:
        proc, url = start(binary, os.path.join(data, "d"), extra)
        try:
            admin = cli(binary, "token", "create", "--data", os.path.join(data, "d"), "--role",
                        "admin", "--name", "bench")
            h = {"Authorization": "Bearer " + admin}
            cases = []
            for i in range(conc):  # one case per client: uploads supersede within a case
                acct = f"bench{i}"
                rec = {"account_id": acct, "type": "personal", "real_name_verified": True,
                       "mobile": "13800138000", "mfa_bound": True, **IDENT}
                r = requests.put(f"{url}/v1/accounts/{acct}", json=rec, headers=h, timeout=30)
                assert r.status_code in (200, 201), r.text
                body = {"account_id": acct, "applicant_type": "personal", "mobile": "13800138000",
                        "contact_mobile": "13700137000", **IDENT}
                r = requests.post(f"{url}/v1/cases", json=body, timeout=30)
                assert r.status_code == 201, r.text
                cases.append((r.json()["id"], r.json()["token"]))
            body = open(photo, "rb").read()
            sampler = Sampler(proc.pid)
            sampler.start()
            local = threading.local()

            def upload(i):
                s = getattr(local, "s", None) or requests.Session()
                local.s = s
                cid, tok = cases[i % conc]
                t0 = time.perf_counter()
                r = s.put(f"{url}/v1/cases/{cid}/documents/id_in_hand", data=body,
                          headers={"Authorization": "Bearer " + tok}, timeout=300)
                return time.perf_counter() - t0, r.status_code

            t0 = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(conc) as ex:
                res = list(ex.map(upload, range(n), timeout=1800))
            wall = time.perf_counter() - t0
            cpu = sampler.cpu_s()
            sampler.stop.set()
            sampler.join()
            lat = sorted(x[0] * 1000 for x in res)
            fails = sum(1 for x in res if x[1] != 201)
            return {"ups": n / wall, "p50": lat[len(lat) // 2],
                    "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
                    "rss": sampler.peak / 1024, "pss": sampler.peak_pss / 1024, "fails": fails, "wall": wall,
                    "cpu": cpu * 1000 / n}
        finally:
            proc.terminate()
            proc.wait(30)
    finally:
        shutil.rmtree(data, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--photo", required=True)
    ap.add_argument("--uploads", type=int, default=200)
    ap.add_argument("--concurrency", default="8,16")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--set", action="append", default=[])
    a = ap.parse_args()
    extra = [x for s in a.set for x in ("--set", s)]
    size = os.path.getsize(a.photo)
    print(f"photo {os.path.basename(a.photo)} {size / 1e6:.2f} MB, {a.uploads} uploads a run, "
          f"median of {a.runs} runs, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    print(f"{'conc':>4} {'uploads/s':>10} {'MB/s':>7} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'peak RSS MiB':>13} {'peak PSS MiB':>13} {'CPU ms/up':>9} {'failures':>8}")
    for c in [int(x) for x in a.concurrency.split(",")]:
        runs = [one_run(a.bin, a.photo, a.uploads, c, extra) for _ in range(a.runs)]
        med = {k: statistics.median(r[k] for r in runs) for k in ("ups", "p50", "p99", "rss", "pss", "cpu")}
        fails = sum(r["fails"] for r in runs)
        print(f"{c:>4} {med['ups']:>10.2f} {med['ups'] * size / 1e6:>7.1f} {med['p50']:>8.0f} "
              f"{med['p99']:>8.0f} {med['rss']:>13.1f} {med['pss']:>13.1f} {med['cpu']:>9.0f} {fails:>8}", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.2f}; CPU ms/up is server + helper + "
          f"workers (user + system) per upload, so {os.cpu_count()} idle cores would allow at "
          f"most {os.cpu_count()} * 1000 / (CPU ms/up) uploads/s")


if __name__ == "__main__":
    main()
