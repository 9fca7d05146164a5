#!/usr/bin/env python
"""Presto in agrinb: reference agreement, embedding throughput against this machine's matmul rate, the algae-bloom
regression of the Presto paper, and PrestoProbe timing on 65,536 cached embeddings.
`python benchmarks/bench_presto.py [--threads 2] [--reps 5] [--skip-algae]`. A script, not a test."""
import argparse, os, time
from pathlib import Path
import numpy as np
import torch
from agrinb.data.pixels import CROPHARVEST_BANDS
from agrinb.models.presto import pretrained, DW_MISSING
from agrinb.meta.presto import PrestoProbe

p = argparse.ArgumentParser()
p.add_argument('--threads', type=int, default=2); p.add_argument('--reps', type=int, default=5)
p.add_argument('--batch-size', type=int, default=128); p.add_argument('--n', type=int, default=2048)
p.add_argument('--shared', default=str(Path(__file__).resolve().parent.parent / '..' / '..' / 'shared' / 'data'))
p.add_argument('--skip-algae', action='store_true')
a = p.parse_args()
torch.set_num_threads(a.threads)
shared = Path(a.shared) if Path(a.shared).exists() else Path('/work/shared/data')
model = pretrained('cpu')

# (a) reference embeddings
ref_path = shared / 'presto' / 'reference_embeddings.npz'
if ref_path.exists():
    ref = np.load(ref_path)
    for which, m17 in (('full', None), ('masked', ref['mask']), ('ndvi_only', ref['mask_ndvi'])):
        mask = None if m17 is None else np.insert(m17, CROPHARVEST_BANDS.index('B9'), 0, axis=2).astype(bool)
        dw = np.full_like(ref['dynamic_world'], DW_MISSING) if which == 'ndvi_only' else ref['dynamic_world']
        e = model.embed(ref['x_raw'], ref['latlon'][:, 0], ref['latlon'][:, 1], month=ref['month'], dynamic_world=dw,
                        mask=mask, progress=False)
        print(f'(a) max |agrinb - published| emb_{which}: {np.abs(e - ref[f"emb_{which}"]).max():.2e}')
else: print(f'(a) skipped: {ref_path} absent')

# (b) throughput: full 12 x 18 input (no Dynamic World: 98 tokens per series), interleaved with a 2048^2 matmul
def flops_per_series(L, D=128, hidden=512, depth=2):
    lin = 2 * L * (D * 3 * D + D * D + 2 * D * hidden)   # qkv, proj, fc1, fc2
    att = 2 * 2 * L * L * D                              # q k^T and attn v over all heads
    return depth * (lin + att)
r = np.random.default_rng(0)
x = r.uniform(0, 3000, (a.n, 12, 18)); x[..., :2] = r.uniform(-20, -5, (a.n, 12, 2)); x[..., 13] = r.uniform(270, 300, (a.n, 12))
x[..., 14] = .002; x[..., 15] = r.uniform(0, 500, (a.n, 12)); x[..., 16] = 3
A, B = torch.randn(2048, 2048), torch.randn(2048, 2048)
A @ B; model.embed(x[:256], 10., 20., progress=False, batch_size=a.batch_size)
mm, emb = [], []
for _ in range(a.reps):
    t = time.perf_counter(); A @ B; A @ B; mm.append(2 * 2 * 2048 ** 3 / (time.perf_counter() - t) / 1e9)
    t = time.perf_counter(); model.embed(x, 10., 20., progress=False, batch_size=a.batch_size); emb.append(a.n / (time.perf_counter() - t))
    t = time.perf_counter(); A @ B; A @ B; mm.append(2 * 2 * 2048 ** 3 / (time.perf_counter() - t) / 1e9)
fl = flops_per_series(98)
gf = [s * fl / 1e9 for s in emb]
ratio = [g / np.mean(mm[2 * i:2 * i + 2]) for i, g in enumerate(gf)]
print(f'(b) {a.threads} threads, batch {a.batch_size}, {a.n} series x {a.reps} runs; {fl / 1e6:.1f} MFLOP/series (98 tokens); '
      f'load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other work on the machine slows the small ops most)')
print(f'    embed: median {np.median(emb):.0f} series/s (runs {", ".join(f"{v:.0f}" for v in emb)}) = {np.median(gf):.1f} GFLOP/s')
print(f'    matmul 2048^2 float32: median {np.median(mm):.1f} GFLOP/s (runs {", ".join(f"{v:.0f}" for v in mm)})')
print(f'    embed / matmul rate, per run: median {np.median(ratio):.0%}, best {max(ratio):.0%} (runs {", ".join(f"{v:.0%}" for v in ratio)})')

# (c) algae blooms: RMSE of a random forest on Presto embeddings vs on the raw values, is_test split, 3 seeds
algae = shared / 'presto_algae_blooms'
if algae.exists() and not a.skip_algae:
    from sklearn.ensemble import RandomForestRegressor
    ld = lambda n: np.load(algae / f'{n}.npy')
    X, ll, mo, dwa, y, test = ld('s1_s2_era5_srtm'), ld('latlon'), ld('month'), ld('dynamic_world'), ld('target'), ld('is_test').astype(bool)
    t = time.perf_counter()
    Z = model.embed(X, ll[:, 0], ll[:, 1], month=mo, dynamic_world=dwa, progress=False)
    t = time.perf_counter() - t
    raw = np.nan_to_num(X.reshape(len(X), -1))
    res = {'Presto + RF': [], 'RF on raw': []}
    for seed in range(3):
        for k, f in (('Presto + RF', Z), ('RF on raw', raw)):
            pr = RandomForestRegressor(random_state=seed, n_jobs=a.threads).fit(f[~test], y[~test]).predict(f[test])
            res[k].append(float(np.sqrt(np.mean((pr - y[test]) ** 2))))
    print(f'(c) algae blooms ({(~test).sum()} train / {test.sum()} test; embedding took {t:.1f} s): RMSE, 3 seeds')
    for k, v in res.items(): print(f'    {k:>12}: {np.mean(v):.3f} +- {np.std(v):.3f}  ({", ".join(f"{u:.3f}" for u in v)})'
                                    f'  published {"0.884 +- 0.01" if k.startswith("Presto") else "1.249"}')
else: print(f'(c) skipped: {algae} absent or --skip-algae')

# (d) PrestoProbe.adapt on a 64-shot support + predict_proba on 256 x 256 = 65,536 cached embeddings
Zs = model.embed(x[:256], 10., 20., progress=False)
rz = np.random.default_rng(1)
cache = np.concatenate([Zs] * 256)[:65536] + rz.normal(0, .01, (65536, 128)).astype(np.float32)
ys = (rz.random(64) < .5).astype(int); ys[:2] = [0, 1]
probe, ts = PrestoProbe(), []
for _ in range(a.reps):
    t = time.perf_counter(); pr = probe.adapt(cache[:64], ys, seed=0).predict_proba(cache); ts.append(time.perf_counter() - t)
assert pr.shape == (65536,)
print(f'(d) PrestoProbe adapt (64 support) + predict_proba (65,536 cached embeddings): median {np.median(ts):.3f} s '
      f'(runs {", ".join(f"{v:.3f}" for v in ts)})')
