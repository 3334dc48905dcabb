"""Experiment (issue 7): CelebA open-set K=1, seeds 0-4, with YuNet run on the photo as is
or upscaled 2x, the SFace chip warped directly or after an INTER_AREA shrink, with and
without mirror-image averaging. Run from the project root; detections cached in /tmp."""
import sys, time, numpy as np, cv2, pickle, os
sys.path.insert(0, '.')
from facesearch.settings import get_settings
from facesearch.datasets.registry import load_images
from facesearch.evaluation import openset as OS
from facesearch.imaging.detection import get_detector, Face
from facesearch.models.base import l2_normalise
from facesearch.models.registry import get_model
from facesearch.imaging.align import similarity_transform, TEMPLATE_112, FIVE_POINTS
from facesearch.search.verdicts import get_threshold
from PIL import Image
s = get_settings()
imgs = load_images('../shared/data/celeba', 'auto')
det = get_detector('yunet', s); emb = get_model('sface', s).load()
def detect_up(rgb, up):
    if up == 1: return det.detect(rgb)
    h, w = rgb.shape[:2]
    big = cv2.resize(rgb, (w*up, h*up), interpolation=cv2.INTER_CUBIC)
    fs = det.detect(big)
    out = []
    for f in fs:
        b = tuple(v/up for v in f.box); lm = {k: (p[0]/up, p[1]/up) for k, p in f.landmarks.items()}
        out.append(Face(b, f.confidence, lm))
    return out
def warp(rgb, f, mode):
    src = np.array([f.landmarks[k] for k in FIVE_POINTS]); m = similarity_transform(src, TEMPLATE_112)
    if mode == 'area':
        sc = np.sqrt(abs(np.linalg.det(m[:, :2])))
        if sc < 1:
            h, w = rgb.shape[:2]
            small = cv2.resize(rgb, (max(1, round(w*sc)), max(1, round(h*sc))), interpolation=cv2.INTER_AREA)
            sx, sy = small.shape[1]/w, small.shape[0]/h
            m2 = m.copy(); m2[:, 0] /= sx; m2[:, 1] /= sy
            return cv2.warpAffine(small, m2, (112, 112), flags=cv2.INTER_LINEAR)
    return cv2.warpAffine(rgb, m, (112, 112), flags=cv2.INTER_LINEAR)
cachef = '/tmp/dets.pkl'
D = pickle.load(open(cachef, 'rb')) if os.path.exists(cachef) else {}
variants = {}
t0 = time.time()
for im in imgs:
    p = str(im.path)
    rgb = np.asarray(Image.open(p).convert('RGB'))
    for up in (1, 2):
        if (p, up) not in D: D[(p, up)] = detect_up(rgb, up)
        fs = D[(p, up)]
        if not fs: continue
        f = fs[0]
        for mode in ('lin', 'area'):
            a = warp(rgb, f, mode)
            variants.setdefault((up, mode), {})[p] = a
pickle.dump(D, open(cachef, 'wb'))
print('detect+warp', time.time()-t0, flush=True)
label = {str(im.path): im.identity for im in imgs}
thr = lambda n: float(get_threshold('sface', s, gallery_size=n))
for key, chips in variants.items():
    ps = sorted(chips)
    X = np.stack([chips[p] for p in ps])
    fw = lambda A: np.concatenate([emb._forward(A[i:i+64]) for i in range(0, len(A), 64)])
    e = l2_normalise(fw(X))
    ef = l2_normalise(fw(X[:, :, ::-1].copy()))
    for tta in (False, True):
        E = l2_normalise(e + ef) if tta else e
        ids = [label[p] for p in ps]
        rs = [OS.score_open_set(E, ids, enroll=1, seed=sd, threshold=thr, size_repeats=1) for sd in range(5)]
        print(key, 'tta' if tta else '   ', len(ps), 'FNIR', ' '.join(f'{r.fnir*100:.1f}' for r in rs), 'FPIR', ' '.join(f'{r.fpir*100:.2f}' for r in rs),
              'FNIR@1%', ' '.join(f"{r.fnir_at_fpir['1pct']['fnir']*100:.1f}" for r in rs), 'r1', ' '.join(f'{r.rank1:.3f}' for r in rs), flush=True)
