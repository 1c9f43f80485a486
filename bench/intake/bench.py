"""bench/intake: time and quality of casevault's normalization against
vipsthumbnail and ImageMagick on the large photos of the corpus.

Per photo: median wall ms of N runs of each command (process start included
for all three; casevault's includes forking its helper and one worker), the
casevault pool time it prints itself, and PSNR of each output against one
reference: ImageMagick, 16-bit, -filter Lanczos into the same 2048 box,
lossless PNG, built from the *upright* picture. Nokia HEIF: its irot box is
stale (EXIF says upright, DESIGN §8), ImageMagick and vips apply it and come
out sideways; for PSNR their outputs are turned back (lossless 90 degree
rotation of decoded pixels) and the table flags them as wrongly oriented.
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

# photo -> extra ImageMagick operations that make the reference upright
UNDO_STALE_IROT = {"HMD_Nokia_8.3_5G.heif": ["-rotate", "270"]}


def timed(cmd, runs):
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        ts.append((time.perf_counter() - t0) * 1000)
        if p.returncode != 0:
            raise SystemExit(f"{cmd[0]} failed: {p.stderr[-500:]}")
    return statistics.median(ts), p


def dims(path):
    out = subprocess.run(["identify", "-format", "%w %h", path], capture_output=True, text=True,
                         check=True).stdout
    return tuple(map(int, out.split()))


def psnr(path, ref, work, rotate=None):
    cand = path
    rw, rh = dims(ref)
    ops = []
    if rotate:
        ops += rotate
    cmd = ["convert", path, *ops]
    w, h = dims(path)
    if rotate and rotate[1] in ("90", "270"):
        w, h = h, w
    note = ""
    if (w, h) != (rw, rh):
        cmd += ["-resize", f"{rw}x{rh}!"]
        note = f" (resized {w}x{h}->{rw}x{rh})"
    if len(cmd) > 2:
        cand = os.path.join(work, "cmp.png")
        subprocess.run(cmd + [cand], check=True)
    p = subprocess.run(["compare", "-metric", "PSNR", cand, ref, "null:"], capture_output=True,
                       text=True)
    return float(p.stderr.split()[0]), note


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    photos = sorted(os.listdir(a.corpus))
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for name in photos:
            src = os.path.join(a.corpus, name)
            ref = os.path.join(work, name + ".ref.png")
            undo = UNDO_STALE_IROT.get(name, [])
            subprocess.run(["convert", src, *undo, "-auto-orient", "-depth", "16", "-filter",
                            "Lanczos", "-resize", "2048x2048>", ref], check=True)
            cv_out = os.path.join(work, name + ".cv.jpg")
            vips_out = os.path.join(work, name + ".vips.jpg")
            im_out = os.path.join(work, name + ".im.jpg")
            # runs interleaved (cv, vips, IM, cv, vips, ...) so that load from other
            # processes on this shared machine hits every tool alike
            cmds = {
                "cv": [a.bin, "normalize", "--kind", "id_in_hand", "--set", "intake.workers=1",
                       src, cv_out],
                "vips": ["vipsthumbnail", src, "-s", "2048x2048", "-o",
                         vips_out + "[Q=85,strip]"],
                "im": ["convert", src, "-auto-orient", "-resize", "2048x2048>", "-strip",
                       "-quality", "85", im_out],
            }
            ts = {k: [] for k in cmds}
            pools, peaks = [], []
            for r in range(a.runs):
                for k, cmd in cmds.items():
                    if k == "im" and r >= 3:
                        continue
                    ms, p = timed(cmd, 1)
                    ts[k].append(ms)
                    if k == "cv":
                        summary = json.loads(p.stdout)
                        pools.append(summary["ms"])
                        peaks.append(summary["worker_peak_kib"] / 1024)
            cv_ms, vips_ms, im_ms = (statistics.median(ts[k]) for k in ("cv", "vips", "im"))
            pool_ms, peak_mib = statistics.median(pools), max(peaks)
            sideways = bool(undo)
            p_cv, n_cv = psnr(cv_out, ref, work)
            p_vips, n_vips = psnr(vips_out, ref, work, undo if sideways else None)
            p_im, n_im = psnr(im_out, ref, work, undo if sideways else None)
            rows.append((name, cv_ms, pool_ms, vips_ms, im_ms, p_cv, p_vips, p_im, sideways,
                         n_cv + n_vips + n_im, dims(cv_out), peak_mib))
    print(f"bench/intake: id_in_hand (2048 box), q85, median of {a.runs} runs "
          f"(ImageMagick {max(1, min(a.runs, 3))}); wall ms per command; pool = ms inside the "
          "pool as casevault reports it; RSS = peak RSS of the decoder worker")
    print(f"{'photo':26} {'cv ms':>7} {'pool':>7} {'vips':>7} {'IM':>7} {'cv/vips':>8} "
          f"{'IM/vips':>8} {'PSNR cv':>8} {'vips':>6} {'IM':>6} {'cv-vips':>8} {'RSS MiB':>8}  out")
    for (name, cv, pool, vips, im, pc, pv, pi, side, note, d, rss) in rows:
        print(f"{name:26} {cv:7.0f} {pool:7.0f} {vips:7.0f} {im:7.0f} {cv / vips:8.2f} "
              f"{im / vips:8.2f} {pc:8.2f} {pv:6.2f} {pi:6.2f} {pc - pv:+8.2f} {rss:8.0f}  {d[0]}x{d[1]}"
              + ("  [vips and IM applied the stale irot: sideways]" if side else "") + note)
    gm = statistics.geometric_mean([r[1] / r[3] for r in rows])
    print(f"geometric mean cv/vips time {gm:.2f}x; targets: each <= 1.00x and PSNR >= vips - 1 dB: "
          + ("MET" if all(r[1] <= r[3] and r[5] >= r[6] - 1 for r in rows) else "NOT MET"))


if __name__ == "__main__":
    main()
