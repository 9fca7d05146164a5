"""Map inference at scale: `predict_raster` (dask chunks, streamed GeoTIFF) on a lazily generated (12, 18, S, S) float32
raster that is never whole in memory, against the in-memory `predict_pixels` rate of the same predictor on a slice that
fits. Prints the chunked rate, the in-memory rate, their ratio (goal >= 0.8; Presto within 20 %) and the peak RSS of the
process (goal < 2 GB for S = 4,096, a 13 GB raster). The chunked run comes first, so the peak RSS is the mapping's.
    python benchmarks/bench_predict_raster.py --size 2048 --threads 2             # LSTM (MAML, hidden 128)
    python benchmarks/bench_predict_raster.py --model presto --size 256 --chunk 128 --mem-pixels 16384
A script, not a test: on a shared machine quote medians and ratios of one run."""
import argparse, resource, tempfile, time
from pathlib import Path
import numpy as np, torch, dask.array as da, xarray as xr, rioxarray  # noqa: F401
from agrinb.data.pixels import BandStats
from agrinb.predict import predict_raster, predict_pixels

def rss_gb(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20   # ru_maxrss is KiB on Linux

def lazy_raster(S, c, seed=0):
    "A (12, 18, S, S) raster of dask chunks c x c: one random chunk, shifted by the chunk's index (cheap to generate)."
    base = np.random.default_rng(seed).standard_normal((12, 18, c, c), dtype=np.float32)
    def block(block_info=None):
        (y0, y1), (x0, x1) = block_info[None]['array-location'][2:]
        return base[..., :y1 - y0, :x1 - x0] + np.float32(1e-3 * (y0 // c + x0 // c))
    v = da.map_blocks(block, chunks=((12,), (18,), *(((c,) * (S // c) + ((S % c,) if S % c else ()),) * 2)), dtype=np.float32)
    r = xr.DataArray(v, dims=('time', 'band', 'y', 'x'), coords=dict(y=500000. - 10 * np.arange(S), x=300000. + 10 * np.arange(S)))
    return r.rio.write_crs('EPSG:32631'), base

def predictor(kind):
    rng = np.random.default_rng(0)
    if kind == 'lstm':
        from agrinb.meta.maml import MAML
        from agrinb.tasks.pixels import toy_tasks
        t = toy_tasks(1, seed=0)[0]
        return MAML(seed=0, device='cpu').adapt(t.support_x, t.support_y, steps=2, seed=0), BandStats(np.zeros(18), np.ones(18), np.ones(18))
    from agrinb.meta.presto import PrestoProbe
    x = rng.standard_normal((20, 12, 18)).astype(np.float32) * 1000 + 1000; y = np.r_[np.zeros(10), np.ones(10)].astype(int)
    return PrestoProbe(device='cpu').adapt(x, y, lat=45.0, lon=3.0), None

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--model', choices=['lstm', 'presto'], default='lstm'); ap.add_argument('--size', type=int, default=1024)
    ap.add_argument('--chunk', type=int, default=256); ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--workers', type=int, default=1, help='dask threads (each runs the predictor on --threads torch threads)')
    ap.add_argument('--repeats', type=int, default=1); ap.add_argument('--mem-pixels', type=int, default=2**18)
    a = ap.parse_args(); torch.set_num_threads(a.threads); S = a.size
    pred, st = predictor(a.model)
    r, base = lazy_raster(S, a.chunk)
    print(f'{a.model}: {S}x{S}x12x18 raster ({S * S * 12 * 18 * 4 / 1e9:.2f} GB float32, lazy), chunk {a.chunk}, '
          f'{a.workers} dask thread(s) x {a.threads} torch threads; RSS before mapping {rss_gb():.2f} GB', flush=True)
    chk = []
    with tempfile.TemporaryDirectory() as d:
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            f = predict_raster(pred, r, Path(d) / 'p.tif', st, bands=None, chunk=a.chunk, num_workers=a.workers, progress=False)
            chk.append(time.perf_counter() - t0)
        size = f.stat().st_size
    peak = rss_gb()
    n = min(a.mem_pixels, S * S); reps = max(1, (n + a.chunk ** 2 - 1) // a.chunk ** 2)
    x = np.concatenate([np.ascontiguousarray(base.transpose(2, 3, 0, 1)).reshape(-1, 12, 18)] * reps)[:n]
    kw = dict(lat=np.full(n, 45.0), lon=np.full(n, 3.0)) if a.model == 'presto' else {}
    mem = []
    for _ in range(max(3, a.repeats)):
        t0 = time.perf_counter(); predict_pixels(pred, x, st, **kw); mem.append(time.perf_counter() - t0)
    c, m = np.median(chk), np.median(mem)
    print(f'predict_raster: {S * S / c:,.0f} px/s ({c:.1f} s for {S * S:,} px, GeoTIFF {size / 1e6:.1f} MB); '
          f'in-memory predict_pixels on {n:,} px: {n / m:,.0f} px/s; ratio {(S * S / c) / (n / m):.2f}; '
          f'peak RSS during mapping {peak:.2f} GB')

if __name__ == '__main__': main()
