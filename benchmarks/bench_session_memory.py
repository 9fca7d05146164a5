"""Memory of the map session on a raster larger than it should hold (issue 15: a 2,000 x 2,000 raster mapped in
< 2 GB; adapt + predict <= 3x the raster's size).

1. Writes a `--size` x `--size` synthetic datacube (12 months x 18 bands) into `--dir` (kept between runs; `--fresh`
   rewrites it) in a separate process: `--format nc`, a float32 netCDF cube; `--format tif`, a raw Earth Engine
   export laid out like CropHarvest's (206 float64 bands, 12 steps of 17 dynamic bands then elevation and slope,
   tiled 256 x 256, LZW, pixel-interleaved; B1 and B10, which the cube lacks, hold its B2 and B12).
2. In a fresh process for each measurement: opens a `LabelingSession` on the file (the small pretrained TIML,
   `learner='timl'`; `load_raster` opens the file lazily), labels `--labels` pixels per class from the cube's
   truth, adapts and predicts. Prints the process's peak resident memory (VmHWM over the whole process: imports,
   torch, the session's checks, labelling, adapt and predict) and the growth of the peak during adapt + predict,
   both as GB and as a ratio to the raster's size, and the seconds of each phase. `--repeats` runs, medians.

Usage: python benchmarks/bench_session_memory.py [--format nc|tif] [--size 2000] [--dir /tmp/agrinb_bench] [--repeats 3] [--threads 2]
"""
import argparse, json, os, statistics, subprocess, sys, time
from pathlib import Path

MEASURE = r'''
import json, sys, time
import numpy as np, pandas as pd
def kib(f): return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith(f + ':')) * 1024
path, k, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t0 = time.perf_counter()
import xarray as xr
from agrinb.app import LabelingSession
s = LabelingSession(path, learner='timl', progress=False, device='cpu', threads=threads, adapt_steps=50)
t1 = time.perf_counter()
truth = np.load(path + '.truth.npy') if path.endswith('.tif') else xr.open_dataset(path)['is_crop'].values   # (y, x)
rng = np.random.default_rng(0)
for cls, mask in (('crop', truth), ('non_crop', ~truth)):
    r, c = np.nonzero(mask); i = rng.choice(len(r), k, replace=False)
    for j in i: s.add_label(float(s.raster.lat.values[r[j], c[j]]), float(s.raster.lon.values[r[j], c[j]]), cls)
opened = kib('VmHWM')
open('/proc/self/clear_refs', 'w').write('5'); base = kib('VmRSS')
t2 = time.perf_counter(); s.adapt(); t3 = time.perf_counter(); p = s.predict(); t4 = time.perf_counter()
assert p.shape == truth.shape and np.isfinite(p.values).all()
from sklearn.metrics import roc_auc_score
print(json.dumps(dict(raster=s.raster.size * 4, lazy=s.raster.chunks is not None, opened=opened, base=base,
                      hwm=kib('VmHWM'), open_s=t1 - t0, adapt_s=t3 - t2, predict_s=t4 - t3,
                      auc=roc_auc_score(truth.ravel(), p.values.ravel()))))
'''

WRITE = r'''
import os, sys
import numpy as np
from agrinb.data.synthetic import make_datacube
cube = make_datacube('Togo', size=(int(sys.argv[2]),) * 2, seed=0)
tmp = sys.argv[1] + '.tmp'
if sys.argv[1].endswith('.nc'): cube.drop_vars(['label', 'subtype', 'field']).to_netcdf(tmp, engine='h5netcdf')
else:
    import rasterio
    from rasterio.windows import Window
    from agrinb.data.cropharvest import RAW_DYNAMIC_BANDS, RAW_STATIC_BANDS
    stand_in = {'B1': 'B2', 'B10': 'B12'}
    names = [f'{b}_{t}' if t else b for t in range(12) for b in RAW_DYNAMIC_BANDS] + RAW_STATIC_BANDS
    H = W = int(sys.argv[2]); bands = list(cube.band.values)
    prof = dict(driver='GTiff', dtype='float64', width=W, height=H, count=len(names), crs='EPSG:4326', tiled=True,
                blockxsize=256, blockysize=256, compress='lzw', interleave='pixel', transform=cube.rio.transform())
    with rasterio.open(tmp, 'w', **prof) as f:
        for i, n in enumerate(names): f.set_band_description(i + 1, n)
        for y in range(0, H, 256):
            for x in range(0, W, 256):
                blk = cube.values[:, :, y:y + 256, x:x + 256]
                dyn = [blk[t, bands.index(stand_in.get(b, b))] for t in range(12) for b in RAW_DYNAMIC_BANDS]
                st = [blk[0, bands.index(b)] for b in RAW_STATIC_BANDS]
                f.write(np.stack(dyn + st).astype(np.float64), window=Window(x, y, blk.shape[3], blk.shape[2]))
    np.save(sys.argv[1] + '.truth.npy', cube.is_crop.values)
os.replace(tmp, sys.argv[1])
'''


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--size', type=int, default=2000)
    ap.add_argument('--dir', default='/tmp/agrinb_bench')
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--labels', type=int, default=10)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--fresh', action='store_true')
    ap.add_argument('--format', choices=('nc', 'tif'), default='nc')
    a = ap.parse_args()
    path = Path(a.dir) / f'cube_{a.size}.{a.format}'
    path.parent.mkdir(parents=True, exist_ok=True)
    if a.fresh or not path.exists():
        t = time.perf_counter(); subprocess.run([sys.executable, '-c', WRITE, str(path), str(a.size)], check=True)
        print(f'wrote {path} ({path.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t:.0f} s')
    runs = []
    for r in range(a.repeats):
        out = subprocess.run([sys.executable, '-c', MEASURE, str(path), str(a.labels), str(a.threads)],
                             check=True, capture_output=True, text=True).stdout
        m = json.loads(out.strip().splitlines()[-1]); runs.append(m)
        m['peak'] = max(m['opened'], m['hwm'])   # VmHWM was reset after opening: the process peak is the larger
        print(f"run {r + 1}: raster {m['raster'] / 1e9:.3f} GB (lazy: {m['lazy']}); process peak {m['peak'] / 1e9:.3f} GB "
              f"(after opening + labelling {m['opened'] / 1e9:.3f} GB); adapt + predict grew the peak by "
              f"{(m['hwm'] - m['base']) / 1e9:.3f} GB = {(m['hwm'] - m['base']) / m['raster']:.3f}x the raster; "
              f"open {m['open_s']:.1f} s, adapt {m['adapt_s']:.1f} s, predict {m['predict_s']:.1f} s; AUC {m['auc']:.3f}")
    med = lambda k: statistics.median(m[k] for m in runs)
    print(f"median of {len(runs)}: process peak {med('peak') / 1e9:.3f} GB (target < 2 GB for 2,000 x 2,000), growth "
          f"{statistics.median((m['hwm'] - m['base']) / m['raster'] for m in runs):.3f}x the raster (target <= 3x), "
          f"predict {med('predict_s'):.1f} s")


if __name__ == '__main__': main()
