"Out-of-core map inference (agrinb.predict): bounded memory in a subprocess, bit-identical to in-memory, atomic writes, distributed."
import os, signal, subprocess, sys, textwrap, time
from pathlib import Path
import numpy as np
import pytest
import rasterio
from agrinb.core import AgrinbError
from agrinb.data.pixels import BandStats
from agrinb.data.synthetic import make_datacube
from agrinb.meta.maml import MAML
from agrinb.tasks.pixels import toy_tasks
from agrinb.predict import predict_raster, predict_pixels, open_raster

REPO = Path(__file__).resolve().parents[1]

# a lazily generated (12, 18, S, S) raster (dask random chunks, never whole in memory) mapped with a small MAML
SCRIPT = textwrap.dedent('''
    import resource, sys, numpy as np, torch, dask.array as da, xarray as xr, rioxarray
    torch.set_num_threads(1)
    from agrinb.data.pixels import BandStats
    from agrinb.meta.maml import MAML
    from agrinb.tasks.pixels import toy_tasks
    from agrinb.predict import predict_raster
    S, out, chunk, mode = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
    t = toy_tasks(1, seed=0)[0]
    pred = MAML(hidden=8, seed=0, device='cpu').adapt(t.support_x, t.support_y, steps=2, seed=0)
    st = BandStats(np.zeros(18), np.ones(18), np.ones(18))
    v = da.random.default_rng(0).standard_normal((12, 18, S, S), chunks=(12, 18, chunk, chunk), dtype=np.float32)
    r = xr.DataArray(v, dims=('time', 'band', 'y', 'x'), coords=dict(y=500000. - 10 * np.arange(S), x=300000. + 10 * np.arange(S)))
    r = r.rio.write_crs('EPSG:32631')
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print('started', flush=True)
    if mode == 'file': predict_raster(pred, r, out, st, bands=None, chunk=chunk, num_workers=2, progress=False)
    else: np.save(out, predict_raster(pred, r.compute(), None, st, bands=None, chunk=S, progress=False).values)
    print('base', base, 'peak', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, flush=True)
''')

def _run(*args, **kw):
    env = {**os.environ, 'PYTHONPATH': str(REPO), 'OMP_NUM_THREADS': '1'}
    return subprocess.run([sys.executable, '-c', SCRIPT, *map(str, args)], env=env, capture_output=True, text=True, **kw)

# (12, 18, S, S) raster of c x c chunks, each one random chunk shifted by its index (cheap to generate, never whole)
MEMORY = textwrap.dedent('''
    import resource, sys, numpy as np, torch, dask.array as da, xarray as xr, rioxarray
    torch.set_num_threads(1)
    from agrinb.data.pixels import BandStats
    from agrinb.meta.maml import MAML
    from agrinb.tasks.pixels import toy_tasks
    from agrinb.predict import predict_raster
    S, c, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    t = toy_tasks(1, seed=0)[0]
    pred = MAML(hidden=8, seed=0, device='cpu').adapt(t.support_x, t.support_y, steps=2, seed=0)
    base = np.random.default_rng(0).standard_normal((12, 18, c, c), dtype=np.float32)
    def block(block_info=None):
        (y0, y1), (x0, x1) = block_info[None]['array-location'][2:]
        return base + np.float32(1e-3 * (y0 // c + x0 // c))
    v = da.map_blocks(block, chunks=((12,), (18,), (c,) * (S // c), (c,) * (S // c)), dtype=np.float32)
    r = xr.DataArray(v, dims=('time', 'band', 'y', 'x'), coords=dict(y=500000. - 10 * np.arange(S), x=300000. + 10 * np.arange(S)))
    rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    st = BandStats(np.zeros(18), np.ones(18), np.ones(18)); before = rss()
    predict_raster(pred, r.rio.write_crs('EPSG:32631'), out, st, bands=None, chunk=c, num_workers=2, progress=False)
    print(before, rss())
''')

def test_memory_bounded(tmp_path):
    """RSS growth while mapping a 1,024 x 1,024 x 12 x 18 raster (906 MB float32, lazy) in 64 x 64 chunks stays below the
    issue's proportion, 2 GB for a 13 GB raster (0.15x): the chunks in flight, not the raster (88 / 91 MB measured at
    256 and 768 px, 85 MB at 384 / 768 / 1,536 px before)."""
    env = {**os.environ, 'PYTHONPATH': str(REPO), 'OMP_NUM_THREADS': '1'}
    r = subprocess.run([sys.executable, '-c', MEMORY, '1024', '64', str(tmp_path / 'p.tif')], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    before, peak = (int(v) for v in r.stdout.split()[-2:]); size = 1024 * 1024 * 12 * 18 * 4
    assert peak - before < size * 2 / 13.4, f'mapping grew RSS by {(peak - before) / 2**20:.0f} MB for a {size / 2**20:.0f} MB raster'
    with rasterio.open(tmp_path / 'p.tif') as f: assert f.shape == (1024, 1024) and f.block_shapes[0] == (64, 64)

def test_identical_to_in_memory(tmp_path):
    "The streamed GeoTIFF holds, bit for bit, the map of the same raster computed in memory in one piece."
    S = 128
    r = _run(S, tmp_path / 'p.tif', 64, 'file', timeout=300); assert r.returncode == 0, r.stderr
    m = _run(S, tmp_path / 'mem.npy', 64, 'memory', timeout=300); assert m.returncode == 0, m.stderr
    with rasterio.open(tmp_path / 'p.tif') as f:
        np.testing.assert_array_equal(f.read(1), np.load(tmp_path / 'mem.npy'))
        assert f.crs.to_epsg() == 32631 and f.transform.a == 10 and f.block_shapes[0] == (64, 64)

def test_killed_run_leaves_no_file(tmp_path):
    "SIGKILL in the middle of a write leaves nothing under the final name."
    env = {**os.environ, 'PYTHONPATH': str(REPO), 'OMP_NUM_THREADS': '1'}
    p = subprocess.Popen([sys.executable, '-c', SCRIPT, '1024', str(tmp_path / 'p.tif'), '64', 'file'], env=env,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == 'started'
    time.sleep(1.5); p.send_signal(signal.SIGKILL); p.wait()
    assert not (tmp_path / 'p.tif').exists()
    assert any(f.name.startswith('.p.tif.') for f in tmp_path.iterdir())  # the partial temporary, never the final name

@pytest.fixture(scope='module')
def small():
    t = toy_tasks(1, seed=0)[0]
    pred = MAML(hidden=8, seed=0, device='cpu').adapt(t.support_x, t.support_y, steps=2, seed=0)
    cube = make_datacube('Togo', size=(40, 40), seed=1)
    x = cube.values.transpose(2, 3, 0, 1).reshape(-1, 12, 18)
    return pred, cube, BandStats.empty(18).update(x), x

def test_distributed_client_same_map(small, tmp_path):
    "A dask.distributed LocalCluster writes the same GeoTIFF as the threaded scheduler."
    distributed = pytest.importorskip('distributed')
    pred, cube, st, x = small
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as c:
        f = predict_raster(pred, cube, tmp_path / 'd.tif', st, chunk=16, client=c, progress=False)
    with rasterio.open(f) as g: np.testing.assert_array_equal(g.read(1), predict_pixels(pred, x, st).reshape(40, 40))

def test_bad_inputs(small, tmp_path):
    pred, cube, st, _ = small
    with pytest.raises(AgrinbError, match='no such file'): predict_raster(pred, tmp_path / 'none.tif', n_time=12)
    bad = tmp_path / 'bad.tif'; bad.write_text('not a tiff')
    with pytest.raises(AgrinbError, match='unreadable'): predict_raster(pred, bad, n_time=12)
    with pytest.raises(AgrinbError, match="missing"): predict_raster(pred, cube.sel(band=cube.band[:5]), stats=st, progress=False)
    with pytest.raises(AgrinbError, match='a writable folder'):
        predict_raster(pred, cube, '/proc/nope/p.tif', st, chunk=16, progress=False)

SESSION = textwrap.dedent('''
    import resource, sys, numpy as np, pandas as pd, torch
    torch.set_num_threads(1)
    from agrinb.data.synthetic import make_datacube
    from agrinb.meta.maml import MAML
    from agrinb.app import LabelingSession
    S = int(sys.argv[1])
    s = LabelingSession(make_datacube('Togo', size=(S, S), seed=0), learner=MAML(hidden=32, seed=0, device='cpu'),
                        stats='raster', progress=False, device='cpu', adapt_steps=5)
    s.labels = pd.DataFrame({'lat': [0.] * 4, 'lon': [0.] * 4, 'row': [1, 2, S - 3, S - 5], 'col': [1, 5, 4, S - 7],
                             'cls': ['crop', 'crop', 'non_crop', 'non_crop']})
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    p = s.adapt().predict()
    assert p.shape == (S, S) and np.isfinite(p.values).all()
    print(s.raster.size * 4, base, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
''')

def test_session_adapt_predict_memory():
    """LabelingSession.adapt + predict on a 300 x 300 raster (74 MB) grows RSS by under half the raster plus what the
    chunks in flight hold (measured 170-182 MB here at 300 x 300: two threads, a 128 x 128-pixel chunk each, with its
    prepared copy and the LSTM's activations; `predict_raster`'s in-flight memory did not grow from 256^2 to 768^2). It was ~14x the raster,
    then 1.12x more from dask's `from_array`, which copied the whole raster before chunking it."""
    env = {**os.environ, 'PYTHONPATH': str(REPO), 'OMP_NUM_THREADS': '1'}
    r = subprocess.run([sys.executable, "-c", SESSION, "300"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    size, base, peak = (int(v) for v in r.stdout.split()[-3:])
    in_flight = 200e6   # the chunk workers' buffers (see the docstring); a second copy of the raster would exceed the bound
    assert peak - base < size / 2 + in_flight, f'adapt + predict grew RSS by {(peak - base) / 1e6:.0f} MB ({(peak - base) / size:.2f}x the raster)'

def test_presto_probe_path():
    "A PrestoProbe predictor gets raw series and each pixel's lat/lon; the chunked map equals the in-memory one."
    from agrinb.meta.presto import PrestoProbe
    from agrinb.predict import _lonlat_of
    big = make_datacube('Togo', size=(64, 64), seed=0)
    x = big.values.transpose(2, 3, 0, 1).reshape(-1, 12, 18)
    lat, lon = _lonlat_of(big, big.y.values, big.x.values)
    y = big.is_crop.values.ravel().astype(int); idx = np.r_[np.flatnonzero(y)[:3], np.flatnonzero(1 - y)[:3]]
    pred = PrestoProbe(device='cpu', progress=False).adapt(x[idx], y[idx], lat=lat[idx], lon=lon[idx])
    cube = big.isel(y=slice(0, 32), x=slice(0, 16))
    x = cube.values.transpose(2, 3, 0, 1).reshape(-1, 12, 18)
    lat, lon = _lonlat_of(cube, cube.y.values, cube.x.values)
    m = predict_raster(pred, cube, None, None, chunk=16, progress=False)
    np.testing.assert_array_equal(m.values, predict_pixels(pred, x, None, lat=lat, lon=lon).reshape(32, 16))
    assert m.values.std() > 0


def test_netcdf_is_read_lazily_and_maps_like_memory(tmp_path):
    "A netCDF cube opens as dask chunks (nothing read) and `predict_raster` maps it bit for bit like the cube in memory."
    from agrinb.data.raster import load_raster
    t = toy_tasks(1, seed=0)[0]
    pred = MAML(hidden=8, seed=0, device='cpu').adapt(t.support_x, t.support_y, steps=2, seed=0)
    cube = make_datacube('Togo', size=(40, 40), seed=1)
    cube.drop_vars([c for c in cube.coords if c not in cube.dims and c != 'spatial_ref']).to_netcdf(tmp_path / 'c.nc')
    nc = load_raster(tmp_path / 'c.nc', chunk=16)
    assert nc.chunks[-2:] == ((16, 16, 8), (16, 16, 8)) and nc.rio.crs == cube.rio.crs
    st = BandStats.empty(18).update(cube.values.transpose(2, 3, 0, 1).reshape(-1, *cube.shape[:2]))
    a = predict_raster(pred, nc, None, st, bands=list(cube.band.values), chunk=16, progress=False)
    b = predict_raster(pred, load_raster(tmp_path / 'c.nc', chunk=None), None, st, bands=list(cube.band.values), chunk=16, progress=False)
    np.testing.assert_array_equal(a.values, b.values)
    with pytest.raises(AgrinbError, match="c.nc: field 'chunk'"): load_raster(tmp_path / 'c.nc', chunk=-1)
