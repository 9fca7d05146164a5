"""Embedded dataset: build time, regional shift and few-shot difficulty.

Run: `python benchmarks/bench_synthetic.py` (add `--quick` for fewer repeats). Prints:
1. time to build `make_dataset(20000)`, a 256 x 256 `make_datacube` and the benchmark tasks;
2. a nearest-centroid crop / non-crop classifier trained on one region (70 %), scored (balanced accuracy) on that
   region's other 30 % and on a distant region's 30 %, against the distant region's own classifier: the loss shows
   that regional shift exists;
3. a random forest (scikit-learn defaults) on the held-out test tasks with 20 labels (10 + 10) and with the whole
   training split: the few-shot gap that meta-learning should close;
4. a random forest trained on Togo samples mapping Togo datacubes (the cube and the samples share one generator).
"""
import argparse, os, sys, time
import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import roc_auc_score, balanced_accuracy_score
from sklearn.neighbors import NearestCentroid

from agrinb.data.synthetic import make_dataset, make_datacube
from agrinb.tasks import benchmark_tasks

PAIRS = [('Togo', 'Germany'), ('Togo', 'Ghana'), ('Kenya', 'Kazakhstan'), ('France', 'Brazil'),
         ('India', 'Argentina'), ('United States of America', 'Indonesia'), ('Brazil', 'Canada'), ('China', 'Mali')]


def timed(f, repeats):
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter(); out = f(); best = min(best, time.perf_counter() - t0)
    return best, out


def main(quick=False):
    reps = 1 if quick else 3
    print(f'cores available: {len(os.sched_getaffinity(0))}, load average: {os.getloadavg()[0]:.1f}')
    t, ds = timed(lambda: make_dataset(20000, seed=0), reps)
    print(f'make_dataset(20000): {t:.2f} s (best of {reps})  {ds}')
    t, _ = timed(lambda: make_dataset(20000, seed=0, missing=0.25), reps)
    print(f'make_dataset(20000, missing=0.25): {t:.2f} s')
    t, _ = timed(lambda: make_datacube('Togo', size=(256, 256), seed=0), reps)
    print(f'make_datacube(256 x 256): {t:.2f} s')
    t, bench = timed(lambda: benchmark_tasks(ds, progress=False), 1)
    print(f'benchmark_tasks: {t:.2f} s, {len(bench.train)} train / {len(bench.val)} val tasks; test: '
          + ', '.join(f'{x.name} ({len(x.support_y)} train, {len(x.query_y)} test, {x.y.mean():.0%} positive)' for x in bench.test))

    # regional shift: nearest centroid on normalised, flattened series; balanced accuracy (base rates differ)
    st = ds.compute_stats()
    X = ((ds.x - st.mean) / st.std).reshape(len(ds), -1)

    def split(region):
        m = np.flatnonzero(ds.regions == region)
        idx = np.random.default_rng(0).permutation(m); cut = int(0.7 * len(idx))
        return idx[:cut], idx[cut:]

    def score(train, test):
        nc = NearestCentroid().fit(X[train], ds.is_crop[train])
        return balanced_accuracy_score(ds.is_crop[test], nc.predict(X[test]))

    print('\nnearest-centroid crop / non-crop, balanced accuracy on 30 % test splits: trained on A -> A | trained on A -> B '
          '| trained on B -> B')
    drops = []
    for a, b in PAIRS:
        (atr, ate), (btr, bte) = split(a), split(b)
        aa, ab, bb = score(atr, ate), score(atr, bte), score(btr, bte)
        drops.append(bb - ab)
        print(f'  {a:>24s} -> {b:<11s} A->A {aa:.3f}   A->B {ab:.3f}   B->B {bb:.3f}   loss from shift {bb - ab:+.3f}')
    print(f'  mean loss from shift (B->B minus A->B) {np.mean(drops):+.3f}')

    # few-shot difficulty of the held-out test tasks for a random forest
    runs = 3 if quick else 10
    print(f'\nrandom forest AUC ROC on the held-out test tasks (mean +- s.e. over {runs} runs)')
    for task in bench.test:
        Xs, ys = task.support_x.reshape(len(task.support_x), -1), task.support_y
        Xq, yq = task.query_x.reshape(len(task.query_x), -1), task.query_y
        few, full = [], []
        for r in range(runs):
            s = task.shots(10, rng=r)
            rf = RandomForestClassifier(random_state=r, n_jobs=1).fit(s.support_x.reshape(20, -1), s.support_y)
            few.append(roc_auc_score(yq, rf.predict_proba(Xq)[:, 1]))
            rf = RandomForestClassifier(random_state=r, n_jobs=1).fit(Xs, ys)
            full.append(roc_auc_score(yq, rf.predict_proba(Xq)[:, 1]))
        se = lambda v: np.std(v, ddof=1) / np.sqrt(len(v))
        print(f'  {task.name:<14s} 20 labels {np.mean(few):.3f} +- {se(few):.3f}   '
              f'all {len(ys)} labels {np.mean(full):.3f} +- {se(full):.3f}')

    # the datacube shares the generator: a model trained on Togo samples maps a Togo cube
    togo = ds.select(region='Togo')
    flat = lambda x: ((x - st.mean) / st.std).reshape(len(x), -1)
    rf = RandomForestClassifier(random_state=0, n_jobs=1).fit(flat(togo.x), togo.is_crop)
    aucs = []
    for seed in range(3):
        cube = make_datacube('Togo', size=(128, 128), seed=seed)
        x = cube.values.transpose(2, 3, 0, 1).reshape(-1, 12, 18)
        aucs.append(roc_auc_score(cube.coords['is_crop'].values.ravel(), rf.predict_proba(flat(x))[:, 1]))
    print(f'\nrandom forest trained on Togo samples, crop / non-crop AUC on 128 x 128 Togo cubes: '
          + ', '.join(f'{a:.3f}' for a in aucs))


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--quick', action='store_true')
    main(**vars(p.parse_args()))
