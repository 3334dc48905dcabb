"""Experiment (issue 7): CelebA open-set K=1, seeds 0-4, fusing SFace with dlib (or
facenet-casia) by concatenating sqrt(1-w)*sface and sqrt(w)*other. Needs
celeba_openset_variants.py run first (its cached detections)."""
import sys, numpy as np, pickle
sys.path.insert(0, '.')
from facesearch.settings import get_settings
from facesearch.datasets.registry import load_images
from facesearch.evaluation import openset as OS
from facesearch.models.base import l2_normalise
from facesearch.models.registry import get_model
from facesearch.search.verdicts import get_threshold
from PIL import Image
s = get_settings()
imgs = load_images('../shared/data/celeba', 'auto')
D = pickle.load(open('/tmp/dets.pkl', 'rb'))
sf = get_model('sface', s).load(); dl = get_model('dlib', s).load()
label = {str(im.path): im.identity for im in imgs}
ps, A, B = [], [], []
for im in imgs:
    p = str(im.path); fs = D[(p, 1)]
    if not fs: continue
    rgb = np.asarray(Image.open(p).convert('RGB'))
    ps.append(p); A.append(sf.crop(rgb, fs[0])); B.append(dl.crop(rgb, fs[0]))
ea = np.concatenate([sf.embed(A[i:i+64]) for i in range(0, len(A), 64)])
eb = np.concatenate([dl.embed(B[i:i+64]) for i in range(0, len(B), 64)])
np.save('/tmp/ea.npy', ea); np.save('/tmp/eb.npy', eb)
ids = [label[p] for p in ps]
for w in (0.0, 0.3, 0.5, 0.7, 1.0):
    E = l2_normalise(np.hstack([np.sqrt(1-w)*ea, np.sqrt(w)*eb]))
    rs = [OS.score_open_set(E, ids, enroll=1, seed=sd, threshold=0.5, size_repeats=1) for sd in range(5)]
    f1 = [r.fnir_at_fpir['1pct']['fnir']*100 for r in rs]
    print(w, 'FNIR@1%', ' '.join(f'{v:.1f}' for v in f1), f'mean {np.mean(f1):.1f}', 'r1', ' '.join(f'{r.rank1:.3f}' for r in rs), flush=True)
