"""Map inference rate: `predict_raster` (dask chunks, streamed GeoTIFF) against the in-memory `predict_pixels` of the same
raster, an LSTM (MAML, hidden 128) predictor. Medians of --repeats runs; the ratio is chunked / in-memory pixels per second.
python benchmarks/bench_predict_raster.py --size 512 --threads 2"""
import argparse, tempfile, time
from pathlib import Path
import numpy as np, torch, xarray as xr, rioxarray  # noqa: F401
from agrinb.data.pixels import BandStats
from agrinb.meta.maml import MAML
from agrinb.tasks.pixels import toy_tasks
from agrinb.predict import predict_raster, predict_pixels

def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--size', type=int, default=512); ap.add_argument('--chunk', type=int, default=256)
    ap.add_argument('--threads', type=int, default=2); ap.add_argument('--repeats', type=int, default=3)
    a = ap.parse_args(); torch.set_num_threads(a.threads); S = a.size
    t = toy_tasks(1, seed=0)[0]
    pred = MAML(seed=0, device='cpu').adapt(t.support_x, t.support_y, steps=2, seed=0)
    st = BandStats(np.zeros(18), np.ones(18), np.ones(18))
    v = np.random.default_rng(0).standard_normal((12, 18, S, S), dtype=np.float32)
    r = xr.DataArray(v, dims=('time', 'band', 'y', 'x'), coords=dict(y=-np.arange(S) * 10., x=np.arange(S) * 10.)).rio.write_crs('EPSG:32631')
    x = np.ascontiguousarray(v.transpose(2, 3, 0, 1)).reshape(S * S, 12, 18)
    mem, chk = [], []
    with tempfile.TemporaryDirectory() as d:
        for _ in range(a.repeats):
            t0 = time.perf_counter(); predict_pixels(pred, x, st); mem.append(time.perf_counter() - t0)
            t0 = time.perf_counter(); predict_raster(pred, r, Path(d) / 'p.tif', st, bands=None, chunk=a.chunk,
                                                     num_workers=1, progress=False); chk.append(time.perf_counter() - t0)
    m, c = np.median(mem), np.median(chk)
    print(f'{S}x{S} px, chunk {a.chunk}, {a.threads} torch threads: in-memory {S * S / m:,.0f} px/s, '
          f'predict_raster {S * S / c:,.0f} px/s, ratio {m / c:.2f}')

if __name__ == '__main__': main()
