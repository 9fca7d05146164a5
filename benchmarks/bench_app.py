"""Benchmarks for the labelling app (agrinb.app.LabelingSession with the small pretrained TIML).

1. Speed: adapt + predict on a 256 x 256-pixel, 12-month synthetic raster with 10 labels per class, on
   `--threads` CPU threads (target: <= 3 s on 2 cores). Prints the split: features (gap-fill + normalise, done
   once per raster), adapt, predict.
2. Quality: AUC of the probability map against the synthetic cube's true field labels after 2, 5, 10, 20 labels
   per class, labels placed at random vs. 2 + 2 random and then where `suggest` points (same total budget).
   Mean and standard deviation over `--seeds` cubes (target: >= 0.85 at 10 labels per class, random placement).

3. `--compare`: the map session's learners side by side, the Presto probe (the default on a real raster) vs. the
   small TIML (the default on the synthetic cube): AUC of the map after 3 + 3 and 10 + 10 random labels on
   `--seeds` synthetic cubes (the same labels for both), the paired difference (mean +- s.e.), the seconds of the
   one-off Presto embedding pass, and the same session on the real Togo Earth Engine export (no ground truth
   there: the AUC against an NDVI rule of thumb, see `togo_standin`, and the embedding time).

Usage: python benchmarks/bench_app.py [--threads 2] [--seeds 5] [--size 64] [--device cpu] [--compare]
Timings are only meaningful on an otherwise idle machine.
"""
import argparse, os, time
from pathlib import Path
import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from agrinb.app import LabelingSession
from agrinb.meta.pretrained import pretrained_timl
from agrinb.data.synthetic import make_datacube


def label_random(s, truth, k, rng, cls_names=('crop', 'non_crop')):
    "k labels per class at random unlabelled pixels, classes from the truth."
    taken = set(zip(s.labels.row.tolist(), s.labels.col.tolist()))
    for cls, mask in zip(cls_names, (truth, ~truth)):
        rows, cols = np.nonzero(mask)
        order = [i for i in rng.permutation(len(rows)) if (rows[i], cols[i]) not in taken][:k]
        for i in order: s.add_label(float(s.raster.y[rows[i]]), float(s.raster.x[cols[i]]), cls)


def auc(s, truth): return roc_auc_score(truth.ravel(), s.predict().values.ravel())


def speed(learner, stats, size, device, repeats=3):
    cube = make_datacube('Togo', size=(size, size), seed=0)
    truth = cube.is_crop.values
    best = None
    for r in range(repeats):
        s = LabelingSession(cube, learner=learner, stats=stats, device=device, progress=False)
        label_random(s, truth, 10, np.random.default_rng(r))
        t0 = time.perf_counter(); s.features()
        t1 = time.perf_counter(); s.adapt()
        t2 = time.perf_counter(); s.predict()
        t3 = time.perf_counter()
        split = (t1 - t0, t2 - t1, t3 - t2)
        if best is None or sum(split) < sum(best): best = split
    f, a, p = best
    print(f'speed: {size}x{size} px x 12 months x 18 bands, 20 labels, device {device}, {torch.get_num_threads()} threads '
          f'(best of {repeats})')
    print(f'  features {f:.2f} s + adapt {a:.2f} s + predict {p:.2f} s = {f + a + p:.2f} s '
          f'(adapt + predict {a + p:.2f} s; target <= 3 s)')


def quality(learner, stats, size, seeds, ks=(2, 5, 10, 20), device='cpu', batch=4):
    res = {('random', k): [] for k in ks} | {('suggest', k): [] for k in ks}
    for seed in range(seeds):
        cube = make_datacube('Togo', size=(size, size), seed=100 + seed)
        truth = cube.is_crop.values
        for k in ks:  # random placement, k per class
            s = LabelingSession(cube, learner=learner, stats=stats, device=device, progress=False)
            label_random(s, truth, k, np.random.default_rng(seed))
            res['random', k].append(auc(s.adapt(), truth))
        s = LabelingSession(cube, learner=learner, stats=stats, device=device, progress=False)
        label_random(s, truth, 2, np.random.default_rng(seed))  # then follow the suggestions
        for k in ks:
            while len(s.labels) < 2 * k:
                s.adapt()
                for r in s.suggest(min(batch, 2 * k - len(s.labels))).itertuples():
                    s.add_label(r.lat, r.lon, 'crop' if truth[r.row, r.col] else 'non_crop')
            res['suggest', k].append(auc(s.adapt(), truth))
    print(f'quality: AUC of the probability map vs. true fields, {size}x{size}-px synthetic Togo cubes, '
          f'{seeds} seeds (mean +- sd)')
    print('  labels/class   random          with suggest (2+2 random, then suggestions)')
    for k in ks:
        r, g = np.array(res['random', k]), np.array(res['suggest', k])
        print(f'  {k:>13}   {r.mean():.3f} +- {r.std():.3f}   {g.mean():.3f} +- {g.std():.3f}')
    return res


def togo_standin(raster)->np.ndarray:
    "A stand-in truth for the Togo export (it has none): pixels whose seasonal NDVI swing (max - min) is above the median."
    nd = raster.sel(band='NDVI').values
    amp = np.nanmax(nd, 0) - np.nanmin(nd, 0)
    return amp > np.median(amp)


def compare(learner, stats, size, seeds, ks=(3, 10), device='cpu', togo=None):
    from agrinb.meta.presto import PrestoProbe
    res, emb = {(n, k): [] for n in ('probe', 'timl') for k in ks}, []
    probe = PrestoProbe(device=device)
    for seed in range(seeds):
        cube = make_datacube('Togo', size=(size, size), seed=100 + seed)
        truth = cube.is_crop.values
        zs = None
        for k in ks:
            for name, kw in (('probe', dict(learner=probe)), ('timl', dict(learner=learner, stats=stats))):
                s = LabelingSession(cube, device=device, progress=False, **kw)
                if name == 'probe' and zs is not None: s._emb = zs   # the session's cache, as a second Adapt would find it
                label_random(s, truth, k, np.random.default_rng(seed))
                took = s.adapt_and_predict()
                if 'embedding' in took: emb.append(took['embedding']); zs = s._emb
                res[name, k].append(roc_auc_score(truth.ravel(), s.proba.values.ravel()))
    print(f'compare: AUC of the map vs. true fields, {size}x{size}-px synthetic Togo cubes, {seeds} seeds, '
          f'the same random labels for both (mean +- sd; paired difference mean +- s.e.)')
    print('  labels        Presto probe      TIML              probe - TIML')
    for k in ks:
        a, b = np.array(res['probe', k]), np.array(res['timl', k]); d = a - b
        print(f'  {k:>2} + {k:<2}      {a.mean():.3f} +- {a.std():.3f}   {b.mean():.3f} +- {b.std():.3f}   '
              f'{d.mean():+.3f} +- {d.std(ddof=1) / np.sqrt(len(d)):.3f}')
    print(f'  Presto embedding pass ({size * size} px, once per raster): median {np.median(emb):.1f} s '
          f'({size * size / np.median(emb):.0f} px/s)')
    big = make_datacube('Togo', size=(256, 256), seed=100)   # adapt + map a 256 x 256 raster from its cache
    s = LabelingSession(big, learner=probe, device=device, progress=False)
    s._emb = np.tile(zs.reshape(size, size, -1), (-(-256 // size), -(-256 // size), 1))[:256, :256].reshape(256 * 256, -1)
    label_random(s, big.is_crop.values, 10, np.random.default_rng(0))
    runs = [s.adapt_and_predict() for _ in range(3)]
    tot = [r['adapting'] + r['mapping'] for r in runs]
    print(f'  probe adapt + map of a cached 256x256 raster (cache tiled from the {size}x{size} embeddings; 10 + 10 labels): '
          f'median {np.median(tot):.3f} s (adapt {np.median([r["adapting"] for r in runs]):.3f} s, '
          f'map {np.median([r["mapping"] for r in runs]):.3f} s; target <= 1 s)')
    if togo is not None and Path(togo).exists():
        out, zt, emb_t = {(n, k): [] for n in ('probe', 'timl') for k in ks}, None, None
        for seed in range(seeds):
            for k in ks:
                for name, kw in (('probe', {}), ('timl', dict(learner=learner, stats=stats))):   # probe: the default
                    s = LabelingSession(togo, device=device, progress=False, **kw)
                    if name == 'probe' and zt is not None: s._emb = zt
                    truth = togo_standin(s.raster)
                    label_random(s, truth, k, np.random.default_rng(seed))
                    took = s.adapt_and_predict()
                    if 'embedding' in took: emb_t, zt = took['embedding'], s._emb
                    out[name, k].append(roc_auc_score(truth.ravel(), s.proba.values.ravel()))
        s0 = LabelingSession(togo, progress=False)
        print(f'  Togo export ({s0.raster.sizes["y"]}x{s0.raster.sizes["x"]} px, default learner {s0.learner.name}, start month '
              f'{s0.month}, embedding {emb_t:.2f} s): AUC vs. the NDVI-swing stand-in (it has no truth; '
              f'{togo_standin(s0.raster).mean():.0%} of pixels), {seeds} label draws')
        for k in ks:
            a, b = np.array(out['probe', k]), np.array(out['timl', k]); d = a - b
            print(f'    {k:>2} + {k:<2}    {a.mean():.3f} +- {a.std():.3f}   {b.mean():.3f} +- {b.std():.3f}   '
                  f'{d.mean():+.3f} +- {d.std(ddof=1) / np.sqrt(len(d)):.3f}')
    return res


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--seeds', type=int, default=5)
    ap.add_argument('--size', type=int, default=64, help='cube size for the AUC curve')
    ap.add_argument('--speed-size', type=int, default=256)
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--compare', action='store_true', help='only the Presto probe vs. TIML comparison')
    ap.add_argument('--togo', default=str(Path(__file__).resolve().parents[1] / '..' / 'shared' / 'data' / 'ee_exports'
                                          / '98-togo_2019-02-06_2020-02-01.tif'))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t = time.perf_counter()
    learner, stats = pretrained_timl(device=args.device, progress=False)
    print(f'pretrained TIML ready in {time.perf_counter() - t:.1f} s (cached after the first run); '
          f'{os.cpu_count()} CPUs visible, {args.threads} threads used')
    if args.compare:
        compare(learner, stats, args.size, args.seeds, device=args.device, togo=args.togo)
    else:
        speed(learner, stats, args.speed_size, args.device)
        quality(learner, stats, args.size, args.seeds, device=args.device)
