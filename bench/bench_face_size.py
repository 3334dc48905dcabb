"""Face quality gate: how small, blurred or turned can a face be before SFace's verdicts
stop meaning anything? Measures the thresholds of :mod:`facesearch.imaging.quality`.

    .venv/bin/python -m bench.bench_face_size                 # 3-5.5 min on 2 shared cores
    .venv/bin/python -m bench.bench_face_size --save /tmp/q.npz   # + the raw figures

Pipeline: detector ``yunet`` + model ``sface`` (cosine distance), largest face per photo.
Two verdict thresholds are checked, since a "match" comes from either: the 1:1 verify
threshold (chosen here, best accuracy on LFW half A at full resolution) and the 1:N
search threshold for a 1,000-face gallery at the default 1% FPIR (from the shipped
impostor calibration, :mod:`facesearch.search.thresholds`), which is tighter.

Choose on LFW, check elsewhere:

* LFW pairs (one fold, 300 same + 300 different) are split by index: half A (even)
  picks the verify threshold, half B (odd) is the test set of every sweep.
* **Size**: the second photo of every half-B pair is downscaled (INTER_AREA) so the face
  box found at full resolution is W px wide, then (a) *scaled*: the full-resolution box
  and landmarks scaled down, so the embedding's loss is measured apart from the
  detector's; (b) *re-detected* on the small photo (pasted in the middle of a larger
  flat canvas, as a small face in a larger photo): detection failures are their own
  column, accuracy is over the pairs still detected. Minimum width: the smallest W from
  which every larger W keeps, in both variants, 1:1 accuracy and the genuine acceptance
  (TAR) at the 1:N threshold within 3 points of full resolution, the genuine median
  below the verify threshold and detection failures at most 5%.
* **Blur**: the second photo Gaussian-blurred (sigma a fraction of the face width),
  full-resolution landmarks. The chip sharpness (facesearch.imaging.quality.sharpness) of every
  probe, blurred or not, against its pair's outcome: isotonic fits of genuine acceptance
  (1:1 and 1:N) against log sharpness; the threshold is where both fits are back within
  3 points (1:N TAR) / 6 points (1:1 TAR, i.e. 3 points of accuracy, impostors being
  all rejected) of full resolution.
* **Pose**: the yaw estimate (facesearch.imaging.quality.yaw) of real faces, genuine pairs binned
  by the larger |yaw| of the two: LFW pairs, and CelebA pairs of the even identities
  (the odd ones are kept for the check). Pose costs accuracy gradually, so a 3-point
  rule would reject a fifth or more of ordinary photos; the gate only stops faces turned
  so far that a genuine pair is more likely than not to miss the 1:N threshold: the
  first bin (>= 30 pairs) whose genuine median distance crosses it.
* **Check**: the share of CelebA photos of the odd identities (never used to choose
  anything) and of group-photo faces that the chosen thresholds reject, per reason.

Work runs in ``--workers`` processes (default 2), each with one embedder thread.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2
import numpy as np

from facesearch.imaging import quality as Q
from facesearch.imaging.detection import Face

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SIZES = (12, 16, 20, 24, 28, 32, 40, 48, 64)
# Gaussian sigma as a fraction of the face box width (LFW faces are ~95 px wide, so
# 0.02 is a 1.9-px sigma there).
BLUR_FRACS = (0.01, 0.02, 0.03, 0.045, 0.06)
YAW_BINS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 9.0)
GALLERY = 1000
DROP = 0.03  # "collapse": this many points below full resolution
MAX_FAIL = 0.05  # ... or more re-detection failures than this


# ---------------------------------------------------------------------------- helpers
def cos_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.clip(1.0 - np.sum(a * b, axis=-1), 0.0, 2.0)


def best_threshold(d: np.ndarray, same: np.ndarray) -> float:
    """The distance threshold (``d <= t`` is "same") with the best accuracy on (d, same)."""
    order = np.sort(np.unique(d))
    cands = np.concatenate([[order[0] - 1e-6], (order[:-1] + order[1:]) / 2, [order[-1] + 1e-6]])
    acc = [np.mean((d <= t) == same) for t in cands]
    return float(cands[int(np.argmax(acc))])


def accuracy(d: np.ndarray, same: np.ndarray, t: float) -> float:
    return float(np.mean((d <= t) == same)) if len(d) else float("nan")


def tar(d: np.ndarray, t: float) -> float:
    return float(np.mean(d <= t)) if len(d) else float("nan")


def auc(d: np.ndarray, same: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(same, -d)) if 0 < same.sum() < len(same) else float("nan")


def med(x: np.ndarray) -> float:
    return float(np.median(x)) if len(x) else float("nan")


def scale_face(f: Face, sx: float, sy: float) -> Face:
    x, y, w, h = f.box
    return Face((int(round(x * sx)), int(round(y * sy)), max(2, int(round(w * sx))), max(2, int(round(h * sy)))),
                f.confidence, {k: (p[0] * sx, p[1] * sy) for k, p in f.landmarks.items()})


def shift_face(f: Face, dx: float, dy: float) -> Face:
    x, y, w, h = f.box
    return Face((int(round(x + dx)), int(round(y + dy)), w, h), f.confidence,
                {k: (p[0] + dx, p[1] + dy) for k, p in f.landmarks.items()})


def eye_dist(f: Face) -> float:
    a, b = f.landmarks["right_eye"], f.landmarks["left_eye"]
    return float(np.hypot(a[0] - b[0], a[1] - b[1]))


def contrast_sharpness(chip: np.ndarray) -> float:
    """The alternative blur measure the report compares: the Laplacian's variance over the
    grey level's variance (contrast-free)."""
    g = cv2.cvtColor(chip, cv2.COLOR_RGB2GRAY)[Q._ROWS, Q._COLS].astype(np.float64)
    return float(cv2.Laplacian(g, cv2.CV_64F).var() / max(g.var(), 1.0))


def f3(x) -> str:
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.3f}"


def row(cells, widths) -> str:
    return " ".join(f"{c:>{w}}" for c, w in zip(cells, widths))


def chunks(seq, n):
    return [seq[i:i + n] for i in range(0, len(seq), n)]


def yaw_label(lo, hi) -> str:
    return f"{lo:.1f}-{hi:.1f}" if hi < 9 else f">={lo:.1f}"


# ---------------------------------------------------------------------------- workers
_PIPE = None


def _init() -> None:
    global _PIPE
    cv2.setNumThreads(1)
    from facesearch.embedding.pipeline import Pipeline
    from facesearch.settings import get_settings

    _PIPE = Pipeline("sface", "yunet", get_settings(), use_cache=False)


def _photos(paths: list[str]) -> list[tuple]:
    """Per photo: (path, largest face or None, embedding, sharpness, contrast sharpness)."""
    from facesearch.imaging.decode import load_image

    found, chips = [], []
    for p in paths:
        rgb = load_image(p).rgb
        faces = _PIPE.detect(rgb)
        found.append(faces[0] if faces else None)
        if faces:
            chips.append(_PIPE.crops(rgb, faces[:1])[0])
    embs = iter(_PIPE.embed(chips))
    chips_it = iter(chips)
    out = []
    for p, f in zip(paths, found):
        if f is None:
            out.append((p, None, None, None, None))
        else:
            c = next(chips_it)
            out.append((p, f, next(embs), Q.sharpness(c), contrast_sharpness(c)))
    return out


def _redetect(small: np.ndarray, expect: Face) -> Face | None:
    """Detect on ``small`` pasted in the middle of a flat canvas; the face whose centre is
    nearest ``expect``'s (within half its width), in ``small``'s coordinates."""
    h, w = small.shape[:2]
    side = max(160, h + 64, w + 64)
    canvas = np.empty((side, side, 3), np.uint8)
    canvas[:] = small.reshape(-1, 3).mean(0).astype(np.uint8)
    oy, ox = (side - h) // 2, (side - w) // 2
    canvas[oy:oy + h, ox:ox + w] = small
    ex, ey = expect.box[0] + expect.box[2] / 2 + ox, expect.box[1] + expect.box[3] / 2 + oy
    best, best_d = None, 0.5 * max(expect.box[2], 2)
    for f in _PIPE.detect(canvas):
        d = np.hypot(f.box[0] + f.box[2] / 2 - ex, f.box[1] + f.box[3] / 2 - ey)
        if d <= best_d:
            best, best_d = f, d
    return None if best is None else shift_face(best, -ox, -oy)


def _size(W: int, items: list[tuple[str, Face]], ea: np.ndarray) -> dict:
    from facesearch.imaging.decode import load_image

    sc_chips, sharp, rd_chips, rd_idx, box_err, eye_err = [], [], [], [], [], []
    for k, (path, f0) in enumerate(items):
        rgb = load_image(path).rgb
        h, w = rgb.shape[:2]
        s = W / f0.box[2]
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        small = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
        fs = scale_face(f0, nw / w, nh / h)
        c = _PIPE.crops(small, [fs])[0]
        sc_chips.append(c)
        sharp.append(Q.sharpness(c))
        fr = _redetect(small, fs)
        if fr is not None:
            rd_chips.append(_PIPE.crops(small, [fr])[0])
            rd_idx.append(k)
            box_err.append(abs(np.log(fr.box[2] / fs.box[2])))
            eye_err.append(abs(np.log(max(eye_dist(fr), 0.1) / max(eye_dist(fs), 0.1))))
    d_rd = np.full(len(items), np.nan)
    if rd_chips:
        d_rd[rd_idx] = cos_dist(ea[rd_idx], _PIPE.embed(rd_chips))
    return dict(W=W, scaled=cos_dist(ea, _PIPE.embed(sc_chips)), redet=d_rd, sharp=np.array(sharp),
                box_err=np.array(box_err), eye_err=np.array(eye_err))


def _blur(frac: float, items: list[tuple[str, Face]], ea: np.ndarray) -> dict:
    from facesearch.imaging.decode import load_image

    chips = []
    for path, f0 in items:
        rgb = cv2.GaussianBlur(load_image(path).rgb, (0, 0), frac * f0.box[2])
        chips.append(_PIPE.crops(rgb, [f0])[0])
    return dict(frac=frac, d=cos_dist(ea, _PIPE.embed(chips)), sharp=np.array([Q.sharpness(c) for c in chips]),
                ratio=np.array([contrast_sharpness(c) for c in chips]))


# ---------------------------------------------------------------------------- choosing
def isotonic_threshold(x: np.ndarray, ok: np.ndarray, target: float) -> tuple[float, object]:
    """The smallest x at which an increasing isotonic fit of ``ok`` (0/1) on log x reaches
    ``target``; and the fit."""
    from sklearn.isotonic import IsotonicRegression

    lx = np.log(np.maximum(x, 1e-3))
    fit = IsotonicRegression(increasing=True, out_of_bounds="clip").fit(lx, ok.astype(float))
    grid = np.linspace(lx.min(), lx.max(), 2000)
    hit = np.nonzero(fit.predict(grid) >= target)[0]
    return (float(np.exp(grid[hit[0]])) if len(hit) else float("inf")), fit


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--save", help="write the raw per-pair figures to this .npz")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()

    def stamp() -> str:
        return f"[{time.perf_counter() - t0:.0f} s]"

    from facesearch.datasets.lfw import read_lfw_pairs
    from facesearch.datasets.registry import load_images
    from facesearch.settings import get_settings
    from facesearch.search.thresholds import DEFAULT_TARGET_FPIR
    from facesearch.search.verdicts import search_thresholds

    settings = get_settings()
    t_search = search_thresholds("sface", settings, gallery_size=GALLERY, target=DEFAULT_TARGET_FPIR)[0]
    pairs = read_lfw_pairs(DATA / "lfw" / "pairs.txt")
    lfw_paths = sorted({str(p.a) for p in pairs} | {str(p.b) for p in pairs})
    celeb = load_images(DATA / "celeba", "celeba")
    celeb_paths = [str(im.path) for im in celeb]

    pool = mp.get_context("spawn").Pool(max(1, args.workers), initializer=_init)
    lfw_jobs = [pool.apply_async(_photos, (c,)) for c in chunks(lfw_paths, 60)]
    celeb_jobs = [pool.apply_async(_photos, (c,)) for c in chunks(celeb_paths, 120)]
    lfw = {p: (f, e, s, r) for j in lfw_jobs for p, f, e, s, r in j.get() if f is not None}

    # ---- LFW, full resolution: threshold on half A ------------------------------------
    ok = [i for i, p in enumerate(pairs) if str(p.a) in lfw and str(p.b) in lfw]
    half_a = [i for i in ok if i % 2 == 0]
    half_b = [i for i in ok if i % 2 == 1]
    same_all = np.array([p.same for p in pairs])
    d_full = np.full(len(pairs), np.nan)
    for i in ok:
        d_full[i] = cos_dist(lfw[str(pairs[i].a)][1], lfw[str(pairs[i].b)][1])
    t_a = best_threshold(d_full[half_a], same_all[half_a])
    t_b = best_threshold(d_full[half_b], same_all[half_b])
    same_b, d_b = same_all[half_b], d_full[half_b]
    gen_b = same_b
    acc_full, tar1_full, tark_full = accuracy(d_b, same_b, t_a), tar(d_b[gen_b], t_a), tar(d_b[gen_b], t_search)

    items = [(str(pairs[i].b), lfw[str(pairs[i].b)][0]) for i in half_b]
    ea = np.stack([lfw[str(pairs[i].a)][1] for i in half_b])
    size_jobs = [pool.apply_async(_size, (W, items, ea)) for W in SIZES]
    blur_jobs = [pool.apply_async(_blur, (f, items, ea)) for f in BLUR_FRACS]
    pool.close()

    print(f"LFW: {len(lfw_paths)} photos, {len(lfw_paths) - len(lfw)} without a face; {len(ok)}/{len(pairs)} pairs "
          f"usable. Verify threshold from half A at full res: {t_a:.3f} (half B's own best: {t_b:.3f}); 1:N search "
          f"threshold for a {GALLERY:,}-face gallery at FPIR {DEFAULT_TARGET_FPIR:.0%}: {t_search:.3f}. Half B "
          f"({len(half_b)} pairs) at full res: accuracy {acc_full:.3f}, AUC {auc(d_b, same_b):.3f}, TAR {tar1_full:.3f} "
          f"(verify) / {tark_full:.3f} (1:N)  {stamp()}")

    # ---- size ---------------------------------------------------------------------------
    w0 = np.array([f.box[2] for _, f in items], float)
    eye0 = np.array([eye_dist(f) for _, f in items])
    sharp0 = np.array([lfw[p][2] for p, _ in items])
    ratio0 = np.array([lfw[p][3] for p, _ in items])
    print()
    print("Size: the second photo of each half-B pair downscaled so its face box is W px wide. 'scaled': full-res "
          "landmarks scaled down; 're-detected': YuNet run again on the small photo (accuracy over the pairs it "
          "still finds). TAR 1:N: genuine pairs accepted at the 1:N threshold. box/eye err: median |log(re-detected "
          "/ true)| of the box width / inter-eye distance.")
    hdr = ["W px", "eye px", "acc", "AUC", "TAR 1:N", "gen med", "imp med", "sharp", "|", "det fail", "acc", "AUC",
           "TAR 1:N", "gen med", "box err", "eye err"]
    wid = [5, 6, 6, 6, 7, 7, 7, 6, 1, 8, 6, 6, 7, 7, 7, 7]
    print(row(["", "", "scaled", "", "", "", "", "", "|", "re-detected", "", "", "", "", "", ""], wid))
    print(row(hdr, wid))
    sizes, raw = [], {}
    for j in size_jobs:
        r = j.get()
        d, e = r["scaled"], r["redet"]
        has = ~np.isnan(e)
        m = dict(W=r["W"], acc=accuracy(d, same_b, t_a), tark=tar(d[gen_b], t_search), gen=med(d[gen_b]),
                 fail=float(1 - has.mean()), racc=accuracy(e[has], same_b[has], t_a),
                 rtark=tar(e[has & gen_b], t_search), rgen=med(e[has & gen_b]))
        sizes.append(m)
        raw.update({f"size{r['W']}_scaled": d, f"size{r['W']}_redet": e, f"size{r['W']}_sharp": r["sharp"]})
        print(row([r["W"], f"{np.median(eye0 * r['W'] / w0):.1f}", f3(m["acc"]), f3(auc(d, same_b)), f3(m["tark"]),
                   f3(m["gen"]), f3(med(d[~same_b])), f"{np.median(r['sharp']):.0f}", "|", f"{m['fail']:.1%}",
                   f3(m["racc"]), f3(auc(e[has], same_b[has])), f3(m["rtark"]), f3(m["rgen"]),
                   f3(med(r["box_err"])), f3(med(r["eye_err"]))], wid))
    print(row(["full", f"{np.median(eye0):.1f}", f3(acc_full), f3(auc(d_b, same_b)), f3(tark_full), f3(med(d_b[gen_b])),
               f3(med(d_b[~same_b])), f"{np.median(sharp0):.0f}", "|", "", "", "", "", "", "", ""], wid))
    print(f"(full-res face box width {np.median(w0):.0f} px median, {w0.min():.0f}-{w0.max():.0f}; FAR at the "
          f"verify threshold 0 at every W)  {stamp()}")

    def size_ok(m) -> bool:
        return (m["acc"] >= acc_full - DROP and m["racc"] >= acc_full - DROP and m["tark"] >= tark_full - DROP
                and m["rtark"] >= tark_full - DROP and m["gen"] <= t_a and m["fail"] <= MAX_FAIL)

    bad = [m["W"] for m in sizes if not size_ok(m)]
    min_width = min((m["W"] for m in sizes if m["W"] > max(bad, default=0)), default=float("inf"))
    at_min = next((m for m in sizes if m["W"] == min_width), None)
    # The same rule under the verify threshold alone, for the report.
    bad1 = [m["W"] for m in sizes if not (m["acc"] >= acc_full - DROP and m["racc"] >= acc_full - DROP
                                          and m["fail"] <= MAX_FAIL)]
    min_width_1to1 = min((m["W"] for m in sizes if m["W"] > max(bad1, default=0)), default=float("inf"))

    # ---- blur ---------------------------------------------------------------------------
    print()
    print("Blur: the second photo of each half-B pair Gaussian-blurred (sigma = fraction of the face width), "
          "full-res landmarks. sharp: chip sharpness (median, 10th percentile); ratio: the contrast-free variant.")
    hdr = ["sigma/w", "sigma px", "acc", "AUC", "TAR", "TAR 1:N", "gen med", "sharp", "p10", "ratio"]
    wid = [7, 8, 6, 6, 6, 7, 7, 6, 5, 6]
    print(row(hdr, wid))
    print(row(["0", "0", f3(acc_full), f3(auc(d_b, same_b)), f3(tar1_full), f3(tark_full), f3(med(d_b[gen_b])),
               f"{np.median(sharp0):.0f}", f"{np.percentile(sharp0, 10):.0f}", f"{np.median(ratio0):.3f}"], wid))
    BD, BS, BR = [d_b], [sharp0], [ratio0]
    for j in blur_jobs:
        r = j.get()
        d = r["d"]
        BD.append(d), BS.append(r["sharp"]), BR.append(r["ratio"])
        raw.update({f"blur{r['frac']}_d": d, f"blur{r['frac']}_sharp": r["sharp"], f"blur{r['frac']}_ratio": r["ratio"]})
        print(row([f"{r['frac']:.3f}", f"{r['frac'] * np.median(w0):.1f}", f3(accuracy(d, same_b, t_a)),
                   f3(auc(d, same_b)), f3(tar(d[gen_b], t_a)), f3(tar(d[gen_b], t_search)), f3(med(d[gen_b])),
                   f"{np.median(r['sharp']):.0f}", f"{np.percentile(r['sharp'], 10):.0f}",
                   f"{np.median(r['ratio']):.3f}"], wid))
    # Genuine probes of every blur level pooled: acceptance against sharpness.
    gd = np.concatenate([d[gen_b] for d in BD])
    gs = np.concatenate([s[gen_b] for s in BS])
    gr = np.concatenate([s[gen_b] for s in BR])
    b1, _ = isotonic_threshold(gs, gd <= t_a, tar1_full - 2 * DROP)
    bk, _ = isotonic_threshold(gs, gd <= t_search, tark_full - DROP)
    min_sharp = max(b1, bk)
    rk, _ = isotonic_threshold(gr, gd <= t_search, tark_full - DROP)
    r1, _ = isotonic_threshold(gr, gd <= t_a, tar1_full - 2 * DROP)
    edges = np.unique(np.percentile(gs, np.linspace(0, 100, 10)))
    print()
    print(f"Blur, the {len(gd)} genuine probes above (all levels) binned by chip sharpness:")
    print(row(["sharpness", "n", "TAR", "TAR 1:N", "gen med"], [9, 4, 6, 7, 7]))
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (gs >= lo) & ((gs < hi) | (hi == edges[-1]))
        print(row([f"{lo:.0f}-{hi:.0f}", int(m.sum()), f3(tar(gd[m], t_a)), f3(tar(gd[m], t_search)), f3(med(gd[m]))],
                  [9, 4, 6, 7, 7]))
    print(f"Isotonic fits: TAR (verify) back within 6 points of full res from sharpness {b1:.1f}; TAR (1:N) within "
          f"3 points from {bk:.1f} -> threshold {min_sharp:.1f}. Contrast-free ratio, same rules: {max(r1, rk):.3f}.  "
          f"{stamp()}")

    # ---- pose ---------------------------------------------------------------------------
    yaw_of = {p: Q.yaw(v[0]) for p, v in lfw.items()}
    print()
    print("Pose: genuine pairs binned by the larger |yaw| of the two faces (yaw: nose offset from the eyes' midpoint / "
          "inter-eye distance). LFW: all usable pairs, each at the other half's verify threshold; CelebA: all pairs of "
          "the even identities (the odd ones are the check set).")
    y_lfw = np.array([max(abs(yaw_of[str(pairs[i].a)]), abs(yaw_of[str(pairs[i].b)])) for i in ok])
    d_ok, s_ok = d_full[ok], same_all[ok]
    t_ok = np.array([t_b if i % 2 == 0 else t_a for i in ok])

    celeb_res = [x for j in celeb_jobs for x in j.get()]
    ident = {str(im.path): im.identity for im in celeb}
    c_none = sum(1 for x in celeb_res if x[1] is None)
    celeb_res = [x for x in celeb_res if x[1] is not None]
    ids = sorted({im.identity for im in celeb}, key=lambda s: (len(s), s))
    tune_ids = set(ids[0::2])
    c_path = np.array([x[0] for x in celeb_res])
    c_faces = [x[1] for x in celeb_res]
    c_emb = np.stack([x[2] for x in celeb_res])
    c_sharp = np.array([x[3] for x in celeb_res])
    c_ratio = np.array([x[4] for x in celeb_res])
    c_id = np.array([ident[p] for p in c_path])
    c_tune = np.array([i in tune_ids for i in c_id])
    c_w = np.array([Q.face_width(f) for f in c_faces])
    c_eye = np.array([eye_dist(f) for f in c_faces])
    c_yaw = np.array([Q.yaw(f) for f in c_faces], float)
    iu = np.triu_indices(len(c_id), 1)
    gen_pair = (c_id[iu[0]] == c_id[iu[1]])
    pi, pj = iu[0][gen_pair], iu[1][gen_pair]
    c_d = cos_dist(c_emb[pi], c_emb[pj])
    c_py = np.maximum(np.abs(c_yaw[pi]), np.abs(c_yaw[pj]))
    c_ptune = c_tune[pi]

    hdr = ["|yaw|", "LFW gen", "gen med", "TAR", "imp", "FAR", "|", "CelebA gen", "gen med", "TAR", "TAR 1:N",
           "faces", "box/eye"]
    wid = [7, 7, 7, 6, 4, 5, 1, 10, 7, 6, 7, 6, 7]
    print(row(hdr, wid))
    pose = []
    ay = np.abs(c_yaw)
    for lo, hi in zip(YAW_BINS[:-1], YAW_BINS[1:]):
        m = (y_lfw >= lo) & (y_lfw < hi)
        g, im = m & s_ok, m & ~s_ok
        cm = c_ptune & (c_py >= lo) & (c_py < hi)
        fm = c_tune & (ay >= lo) & (ay < hi)
        p = dict(lo=lo, hi=hi, n=int(cm.sum()), gen=med(c_d[cm]), tark=tar(c_d[cm], t_search))
        pose.append(p)
        print(row([yaw_label(lo, hi), int(g.sum()), f3(med(d_ok[g])), f3(tar(d_ok[g], t_ok[g]) if g.any() else np.nan),
                   int(im.sum()), f3(tar(d_ok[im], t_ok[im]) if im.any() else np.nan), "|", p["n"], f3(p["gen"]),
                   f3(tar(c_d[cm], t_a)), f3(p["tark"]), f"{fm.sum() / c_tune.sum():.1%}",
                   f"{np.median(c_w[fm] / c_eye[fm]):.2f}" if fm.any() else "-"], wid))
    max_yaw = next((p["lo"] for p in pose if p["n"] >= 30 and p["gen"] > t_search), YAW_BINS[-2])
    print(f"(faces: share of the even identities' faces in the bin; box/eye: their median box width / inter-eye "
          f"distance)  {stamp()}")

    # ---- check --------------------------------------------------------------------------
    chk = ~c_tune
    small = c_w < min_width
    blurry = ~small & (c_sharp < min_sharp)
    turned = ~small & ~blurry & (ay > max_yaw)
    rej = small | blurry | turned
    gmask_pass = (~rej[pi]) & (~rej[pj]) & ~c_ptune
    gmask_rej = (rej[pi] | rej[pj]) & ~c_ptune
    print()
    print(f"Check, CelebA odd identities ({int(chk.sum())} faces of {len(celeb)} photos; {c_none} photos without a face "
          f"in all): rejected {rej[chk].mean():.1%} (too small {small[chk].mean():.1%}, blurred "
          f"{blurry[chk].mean():.1%}, turned {turned[chk].mean():.1%}). Genuine pairs with both faces passed: TAR "
          f"{tar(c_d[gmask_pass], t_a):.3f} (verify) / {tar(c_d[gmask_pass], t_search):.3f} (1:N); with a rejected face: "
          f"{tar(c_d[gmask_rej], t_a):.3f} / {tar(c_d[gmask_rej], t_search):.3f} ({int(gmask_rej.sum())} pairs).")
    print(f"CelebA (all) face width p1/p5/median {np.percentile(c_w, 1):.0f}/{np.percentile(c_w, 5):.0f}/"
          f"{np.median(c_w):.0f} px; sharpness p1/p5/median {np.percentile(c_sharp, 1):.0f}/"
          f"{np.percentile(c_sharp, 5):.0f}/{np.median(c_sharp):.0f}; contrast-free ratio below "
          f"{max(r1, rk):.3f}: {np.mean(c_ratio < max(r1, rk)):.1%} vs sharpness below {min_sharp:.0f}: "
          f"{np.mean(c_sharp < min_sharp):.1%}; box/eye {np.median(c_w / c_eye):.2f} "
          f"(IQR {np.percentile(c_w / c_eye, 25):.2f}-{np.percentile(c_w / c_eye, 75):.2f})")
    print("Group photos:")
    from facesearch.imaging.decode import load_image

    _init()
    times = []
    for photo in sorted((DATA / "photos" / "group").glob("*.jpg")):
        rgb = load_image(photo).rgb
        fs = _PIPE.detect(rgb)
        out = []
        for f, c in zip(fs, _PIPE.crops(rgb, fs)):
            for _ in range(20):
                t = time.perf_counter()
                Q.assess(rgb, f)
                times.append(time.perf_counter() - t)
            w, s, y = Q.face_width(f), Q.sharpness(c), Q.yaw(f)
            verdict = ("too small" if w < min_width else "blurred" if s < min_sharp
                       else "turned" if y is not None and abs(y) > max_yaw else "ok")
            out.append(f"({f.box[0]},{f.box[1]}) w{w:.0f} eye{eye_dist(f):.0f} sharp{s:.0f} yaw{y:+.2f} {verdict}")
        print(f"  {photo.name} {rgb.shape[1]}x{rgb.shape[0]}: " + "; ".join(out))
    print(f"facesearch.imaging.quality.assess: {np.median(times) * 1e3:.3f} ms per face (median, chip made inside); module "
          f"constants now: MIN_FACE_WIDTH {Q.MIN_FACE_WIDTH:g}, MIN_SHARPNESS {Q.MIN_SHARPNESS:g}, MAX_YAW {Q.MAX_YAW:g}")
    pool.join()

    if args.save:
        raw.update(same_b=same_b, d_b=d_b, w0=w0, t_a=np.array(t_a), t_search=np.array(t_search), sharp0=sharp0,
                   ratio0=ratio0, c_path=c_path, c_id=c_id, c_tune=c_tune, c_w=c_w, c_eye=c_eye, c_yaw=c_yaw,
                   c_sharp=c_sharp, c_ratio=c_ratio, c_emb=c_emb, y_lfw=y_lfw, d_ok=d_ok, s_ok=s_ok, t_ok=t_ok)
        np.savez(args.save, **raw)
    print(f"{stamp()} total")
    print(f"min face width {min_width} px (accuracy {at_min['acc'] if at_min else float('nan'):.3f} at {min_width} vs "
          f"{acc_full:.3f} full; 1:1 accuracy alone would allow {min_width_1to1} px); blur threshold {min_sharp:.0f}; "
          f"yaw threshold {max_yaw:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
