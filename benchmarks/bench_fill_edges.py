"""Edge-gap filling: `fill_gaps(edge='nearest')` vs `edge='mean'`, measured with a random forest on real series.

Data: `../shared/data/presto_algae_blooms` (1,122 real samples, 12 months x 18 CropHarvest bands, US Midwest;
target severity >= 3 vs < 3; the file's own train / test split). Gaps: a quarter of the (sample, month) cells
is removed from every band at once (as clouds do), at random, with `--seeds` different masks; the forest
(100 trees) is trained on the filled train split, or on `--shots` samples per class drawn from it, and scored on
the filled test split. Prints the AUC of each rule, per seed, and the median of nearest - mean.

Usage: OMP_NUM_THREADS=1 python benchmarks/bench_fill_edges.py [--seeds 5] [--shots 20] [--missing 0.25]
"""
import argparse
from pathlib import Path
import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import roc_auc_score
from agrinb.data.pixels import fill_gaps

def main():
    p = argparse.ArgumentParser()
    p.add_argument('--seeds', type=int, default=5); p.add_argument('--shots', type=int, default=20)
    p.add_argument('--missing', type=float, default=.25)
    p.add_argument('--data', default=str(Path(__file__).parent.parent/'..'/'shared'/'data'/'presto_algae_blooms'))
    a = p.parse_args()
    d = Path(a.data)
    if not d.exists(): raise SystemExit(f'{d} not found: this benchmark needs the real data in ../shared')
    x = np.load(d/'s1_s2_era5_srtm.npy').astype(np.float32)
    y = (np.load(d/'target.npy') >= 3).astype(int); test = np.load(d/'is_test.npy').astype(bool)
    rows = {'full': [], f'{a.shots}-shot': []}
    for seed in range(a.seeds):
        rng = np.random.default_rng(seed)
        xm = x.copy(); xm[rng.random(x.shape[:2]) < a.missing] = np.nan
        tr = np.flatnonzero(~test)
        few = np.r_[[rng.choice(tr[y[tr] == c], a.shots, replace=False) for c in (0, 1)]].ravel()
        for setting, idx in (('full', tr), (f'{a.shots}-shot', few)):
            auc = {}
            for edge in ('nearest', 'mean'):
                f = fill_gaps(xm, edge=edge).reshape(len(x), -1)
                rf = RandomForestClassifier(100, random_state=seed, n_jobs=1).fit(f[idx], y[idx])
                auc[edge] = roc_auc_score(y[test], rf.predict_proba(f[test])[:, 1])
            rows[setting].append(auc)
            print(f'seed {seed} {setting:>8}: nearest {auc["nearest"]:.3f}  mean {auc["mean"]:.3f}  '
                  f'nearest-mean {auc["nearest"] - auc["mean"]:+.3f}', flush=True)
    for setting, r in rows.items():
        dlt = [q['nearest'] - q['mean'] for q in r]
        print(f'{setting:>8}: median AUC nearest {np.median([q["nearest"] for q in r]):.3f}, mean '
              f'{np.median([q["mean"] for q in r]):.3f}; median nearest-mean {np.median(dlt):+.3f} '
              f'(range {min(dlt):+.3f} .. {max(dlt):+.3f})')

if __name__ == '__main__': main()
