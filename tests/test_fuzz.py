"""Fuzzing the public entry points (hypothesis): every input gives a correct result or a clean `AgrinbError`,
never another exception, and finite input never gives non-finite output.

CI runs a small profile (about 20 s on one thread); `AGRINB_FUZZ=slow` runs ten times as many examples.
`pytest tests/test_fuzz.py -s` prints the cases tried per entry point."""
import os, collections, io, contextlib
import numpy as np, pytest, torch, yaml
from hypothesis import given, settings, strategies as st, HealthCheck, assume
from hypothesis.extra.numpy import arrays
from agrinb.core import AgrinbError, read_config, load_checkpoint, save_checkpoint, safe_name, check_output_path
from agrinb.data.pixels import PixelDataset, BandStats, fill_gaps, concat_datasets
from agrinb.data.geo import to_sphere, country_of
from agrinb.tasks.pixels import Task, TaskInfo, as_task

SLOW = os.environ.get('AGRINB_FUZZ') == 'slow'
def fuzz(n): return settings(max_examples=n * (10 if SLOW else 1), deadline=None, derandomize=not SLOW,
                             suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                                    HealthCheck.function_scoped_fixture])
CASES = collections.Counter()

@pytest.fixture(scope='module', autouse=True)
def report():
    yield
    print('\nfuzz cases per entry point:', dict(sorted(CASES.items())))

def clean(name, fn, *a, **kw):
    "Run `fn`; an AgrinbError is a clean refusal (None), any other exception fails the test."
    CASES[name] += 1
    try: return fn(*a, **kw)
    except AgrinbError as ex:
        assert str(ex).strip(), f'{name}: an AgrinbError without a message'
        return None

# numbers a user may feed: ordinary, huge (beyond float32), inf, NaN
wild = st.one_of(st.floats(-1e3, 1e3), st.sampled_from([1e39, -1e39, np.inf, -np.inf, np.nan, 3.4e38, 0.]))
def wild_arrays(ndim_min=1, ndim_max=4, max_side=5):
    return arrays(np.float64, st.lists(st.integers(0, max_side), min_size=ndim_min, max_size=ndim_max).map(tuple), elements=wild)
coord = st.one_of(st.floats(-90, 90), st.floats(-1e6, 1e6), st.sampled_from([np.nan, np.inf, 1000., 400., -181., 181.]))

@fuzz(120)
@given(wild_arrays(3, 3, 4), st.data())
def test_from_arrays(x, data):
    n = x.shape[0]
    lat = data.draw(st.lists(coord, min_size=n, max_size=n)); lon = data.draw(st.lists(coord, min_size=n, max_size=n))
    labels = data.draw(st.one_of(st.none(), st.lists(st.sampled_from(['maize', 'non_crop', None, 'rice']), min_size=n, max_size=n)))
    d = clean('PixelDataset.from_arrays', PixelDataset.from_arrays, x, lat, lon, labels)
    if d is None: return
    assert not np.isinf(d.x).any() and np.isfinite(d.lat).all() and np.isfinite(d.lon).all()
    assert (np.abs(d.lat) <= 90).all() and 'None' not in list(d.labels)
    np.testing.assert_array_equal(np.isnan(d.x), np.isnan(x))   # no value became NaN or inf on the way in

@fuzz(120)
@given(wild_arrays(1, 4, 5), st.integers(-4, 3))
def test_band_stats(x, axis):
    assume(x.ndim and -x.ndim <= axis < x.ndim)
    s = clean('BandStats.update', BandStats.empty(x.shape[axis], axis).update, x)
    if s is None: return
    assert np.isfinite(s.mean).all() and np.isfinite(s.std).all() and (s.std >= 0).all()
    y = clean('BandStats.scale', s.scale, np.nan_to_num(x, nan=0.))
    if y is not None and np.isfinite(np.nan_to_num(x, nan=0.).astype(np.float32)).all(): assert np.isfinite(y).all()

@fuzz(80)
@given(wild_arrays(3, 3, 4))
def test_fill_gaps_and_normalize(x):
    f = clean('fill_gaps', fill_gaps, x)
    if f is not None and np.isfinite(x[~np.isnan(x)]).all() and (np.abs(x[~np.isnan(x)]) < 3.4e38).all():
        assert np.isfinite(f).all()
    n = x.shape[0]
    d = clean('PixelDataset.from_arrays', PixelDataset.from_arrays, x, [0.] * n, [0.] * n, ['a'] * n)
    if d is None: return
    g = clean('PixelDataset.fill_gaps', d.fill_gaps)
    if g is None: return
    z = clean('PixelDataset.normalize', g.normalize)
    if z is not None: assert np.isfinite(z.x).all()

labels01 = st.lists(st.sampled_from([0, 1, 1, 0, 0.5, 2, -1, True]), min_size=0, max_size=6)
@fuzz(120)
@given(wild_arrays(3, 3, 4), wild_arrays(3, 3, 4), labels01, labels01, coord, coord,
       st.sampled_from(['crop', 'maize', 'non_crop', 'bogus', 'rice']))
def test_task_and_info(sx, qx, sy, qy, lat, lon, target):
    info = clean('TaskInfo', TaskInfo, lat, lon, target)
    if info is not None:
        v = info.vector
        assert v.shape == (13,) and np.isfinite(v).all()
    t = clean('Task', Task, 't', sx, sy, qx, qy, info)
    if t is None: return
    assert np.isfinite(t.x).all() and set(np.unique(t.y)) == {0, 1} and t.query_x.shape[1:] == t.support_x.shape[1:]
    assert clean('as_task', as_task, t) is t

@fuzz(150)
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), coord), st.one_of(st.floats(allow_nan=True), coord))
def test_geo(lat, lon):
    v = clean('to_sphere', to_sphere, lat, lon)
    if v is not None: assert np.isfinite(v).all() and abs(np.linalg.norm(v) - 1) < 1e-9
    c = clean('country_of', country_of, lat, lon)
    if c is not None and np.isfinite(lon) and abs(lon) <= 180:
        shifted = lon - 360 if lon > 0 else lon + 360
        assert country_of(lat, shifted) == c        # longitudes wrap

yaml_text = st.one_of(st.text(max_size=60),
                      st.builds(lambda k, v: f'train:\n  {k}: {v}\n', st.sampled_from(['epochs', 'lr', 'batch_size', 'nope']),
                                st.sampled_from(['ten', '1e-3', '-3', '0', '.nan', '[1, 2]', '{a: 1}', '!!python/name:os.system', '2'])),
                      st.sampled_from(['- 1\n', 'a: &a [1]\nb: *a\n', 'train: {epochs: 3\n', '!!binary AAAA']))
DEFAULTS = {'train': {'epochs': 1, 'lr': 0.001, 'batch_size': 4}, 'model': {'dropout': 0.1}}

@fuzz(100)
@given(yaml_text)
def test_read_config(tmp_path, text):
    p = tmp_path / 'c.yaml'; p.write_text(text, encoding='utf-8')
    cfg = clean('read_config', read_config, p, DEFAULTS)
    if cfg is None: return
    assert set(cfg) == set(DEFAULTS) and isinstance(cfg['train']['epochs'], int)

@fuzz(60)
@given(st.integers(0, 10_000), st.integers(0, 255), st.sampled_from(['flip', 'truncate', 'garbage']))
def test_load_checkpoint_corrupt(tmp_path, pos, byte, how):
    p = tmp_path / 'ok.pt'
    if not p.exists(): save_checkpoint(p, 'MAML', {'w': torch.arange(64.), 'b': torch.ones(3), 'n': torch.tensor(5)}, step=1)
    raw = bytearray(p.read_bytes()); q = tmp_path / 'bad.pt'
    if how == 'flip': i = pos % len(raw); raw[i] ^= (byte or 1)
    elif how == 'truncate': raw = raw[:pos % len(raw)]
    else: raw = bytes([byte]) * (pos % 200)
    q.write_bytes(bytes(raw))
    obj = clean('load_checkpoint', load_checkpoint, q, 'MAML')
    if obj is not None:   # a change the zip container does not hold in a tensor (e.g. a padding byte): weights intact
        torch.testing.assert_close(obj['state']['w'], torch.arange(64.)); torch.testing.assert_close(obj['state']['b'], torch.ones(3))

@fuzz(40)
@given(st.sampled_from(['train', 'evaluate', 'infer', 'make-demo-data', 'demo', 'bogus']),
       st.lists(st.sampled_from(['--device', 'bogus', 'cpu', '--set', 'train.epochs=ten', 'train.lr=.nan', '--work-dir',
                                 'CFG', 'CKPT', 'MISSING', '--overlap', '-3', '--json', 'BAD/PATH/x.json', '--size', '0']),
                max_size=6))
def test_cli(tmp_path, cmd, args):
    from agrinb.cli import main
    (tmp_path / 'c.yaml').write_text('train: {epochs: ten}\n'); (tmp_path / 'k.pt').write_bytes(b'')
    sub = {'CFG': str(tmp_path / 'c.yaml'), 'CKPT': str(tmp_path / 'k.pt'), 'MISSING': str(tmp_path / 'nope'),
           'BAD/PATH/x.json': str(tmp_path / 'f.txt' / 'x.json')}
    (tmp_path / 'f.txt').write_text('a file, not a folder')
    argv = [cmd] + [sub.get(a, a) for a in args]
    if cmd == 'demo': assume('--json' in argv)   # only the fast-failing demo calls: a bad --json must fail before the run
    if cmd == 'make-demo-data': assume('--size' in argv); argv.insert(1, str(tmp_path / 'demo'))
    out, err = io.StringIO(), io.StringIO()
    CASES['cli.main'] += 1
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try: rc = main(argv)
        except SystemExit as ex: rc = ex.code   # argparse's usage errors exit 2
    assert rc in (0, 2), (argv, rc, err.getvalue()[-500:])
    assert 'Traceback' not in err.getvalue(), (argv, err.getvalue()[-800:])

@fuzz(60)
@given(st.integers(0, 100_000), st.integers(1, 255), st.sampled_from(['flip', 'truncate']))
def test_read_sample_corrupt(tmp_path, pos, byte, how):
    from agrinb.data.h5maps import write_sample, read_sample
    p = tmp_path / 'ok.h5'
    if not p.exists(): write_sample(p, {'S2': np.arange(48, dtype=np.float32).reshape(1, 3, 4, 4)}, np.zeros((4, 4)))
    raw = bytearray(p.read_bytes())
    if how == 'flip': raw[pos % len(raw)] ^= byte
    else: raw = raw[:pos % len(raw)]
    q = tmp_path / 'bad.h5'; q.write_bytes(bytes(raw))
    r = clean('h5maps.read_sample', read_sample, q)
    if r is not None: assert all(np.isfinite(v[~np.isnan(v)]).all() for v in r[0].values())

@fuzz(100)
@given(st.text(max_size=20))
def test_names_from_data(tmp_path, name):
    s = clean('safe_name', safe_name, name, 'list.txt', 'line 1')
    if s is not None:
        assert (tmp_path / s).resolve().parent == tmp_path.resolve()     # stays in its folder
    clean('check_output_path', check_output_path, tmp_path / name)

# ---- settings, checkpoint metadata, fit loop, GeoTIFFs, mapping labels (issue 15, second part) ------------------
from agrinb.core import check_settings, check_hparams
size = st.one_of(st.integers(-3, 300), st.sampled_from([200_000, 2**40, 0, 2.5, float('nan'), float('inf'), True]))
rate = st.one_of(st.floats(-1, 3), st.sampled_from([float('nan'), float('inf'), 0.0, 0.999, 1.0]))
lrate = st.one_of(st.floats(-1, 1), st.sampled_from([float('nan'), float('inf'), 0.0, 1e-300, 1e300]))

def _valid_size(v): return isinstance(v, bool) or not isinstance(v, (int, float)) or (np.isfinite(v) and v == int(v) and v >= 1)

@fuzz(150)
@given(size, rate, lrate, st.booleans())
def test_check_settings(hidden, dropout, lr, nested):
    s = {'hidden': hidden, 'dropout': dropout, 'outer_lr': lr}
    got = clean('check_settings', check_settings, {'fit': s} if nested else s, 'x')
    ok = _valid_size(hidden) and 0 <= dropout < 1 and 0 < lr <= np.finfo(np.float32).max   # a rate float32 weights can take
    assert (got is not None) == ok, (s, got)

@fuzz(80)
@given(size, size, rate, st.integers(1, 40), st.booleans())
def test_checkpoint_hparams(tmp_path, hidden, in_features, dropout, width, fit_loop_layout):
    w = {'model': {'w': torch.zeros(4 * width, width), 'b': torch.zeros(1)}}
    hp = {'hidden': hidden, 'in_features': in_features, 'dropout': dropout}
    p = tmp_path / 'c.pt'
    if fit_loop_layout: save_checkpoint(p, 'MAML', {'fit': w}, meta={'hparams': hp})
    else: save_checkpoint(p, 'MAML', w, hparams=hp)
    obj = clean('load_checkpoint(hparams)', load_checkpoint, p)
    if obj is None: return
    for v in (hidden, in_features):   # what loads is a size the file's tensors can hold (no 640 GB model from metadata)
        assert isinstance(v, bool) or (_valid_size(v) and v <= 4 * width), (hp, width)
    assert 0 <= dropout < 1

@fuzz(60)
@given(st.one_of(st.integers(-3, 6), st.sampled_from([1.5, True, None])), st.one_of(st.integers(-2, 4), st.sampled_from([1.5])),
       st.one_of(st.integers(-1, 3)), lrate, rate, st.sampled_from([0.5, float('nan'), float('inf')]), st.booleans())
def test_fit_loop_degenerate(steps, seed, val_every, lr, dropout, val_value, with_val):
    from agrinb.meta.core import fit_loop
    w = torch.zeros(1, requires_grad=True); opt = torch.optim.SGD([w], lr=0.1)
    if isinstance(lr, float): opt.param_groups[0]['lr'] = lr      # what a learner's optimiser holds
    def step(s, rng): loss = ((w - 1) ** 2).sum(); opt.zero_grad(); loss.backward(); opt.step(); return loss
    out = clean('fit_loop', fit_loop, step, steps, lambda: {'w': w.detach().clone(), 'opt': opt.state_dict()}, lambda s: None,
                'fz', val=(lambda: val_value) if with_val else None, val_every=val_every, seed=seed, progress=False,
                meta={'hparams': {'dropout': dropout}})
    if out is None: return
    assert isinstance(steps, int) and not isinstance(steps, bool) and steps >= 1 and len(out['history']) == steps
    assert seed >= 0 and val_every >= 1 and 0 < lr <= np.finfo(np.float32).max and 0 <= dropout < 1
    assert all(np.isfinite(r['train_loss']) and np.isfinite(r.get('val_loss', 0.)) for r in out['history'])

@fuzz(50)
@given(st.sampled_from([None, 'EPSG:4326', 'EPSG:32631']), st.sampled_from(['degrees', 'metres']),
       st.sampled_from([None, 'EPSG:4326', 'EPSG:32631', 'EPSG:bogus']), st.one_of(st.none(), st.integers(0, 20_000)))
def test_read_geotiff(tmp_path, crs, units, given_crs, cut):
    import xarray as xr, rioxarray  # noqa: F401
    from agrinb.data.raster import read_geotiff, load_raster
    y, x = (8. - 1e-3 * np.arange(6), 1. + 1e-3 * np.arange(5)) if units == 'degrees' else (9e5 - 10 * np.arange(6), 3e5 + 10 * np.arange(5))
    da = xr.DataArray(np.ones((4, 6, 5), np.float32), dims=('band', 'y', 'x'), coords={'band': np.arange(1, 5), 'y': y, 'x': x})
    p = tmp_path / f"g{CASES['read_geotiff']}.tif"   # a new file each time (GDAL will not rewrite a truncated one)
    (da.rio.write_crs(crs) if crs else da).rio.to_raster(p)
    if cut is not None: p.write_bytes(p.read_bytes()[:cut])
    g = clean('read_geotiff', read_geotiff, p, crs=given_crs)
    clean('load_raster(stack)', load_raster, p, n_time=2, crs=given_crs)
    if g is None: return
    assert g.rio.crs is not None                                  # never degrees-or-metres guessed
    if g.rio.crs.is_geographic: assert np.abs(g.y.values).max() <= 90 and np.abs(g.x.values).max() <= 360
    if crs is not None and given_crs is not None: assert g.rio.crs.to_epsg() == int(given_crs.split(':')[1])

@fuzz(60)
@given(arrays(np.int64, (4, 4), elements=st.integers(-3, 5)), st.integers(2, 4), st.sampled_from([-1, 255]))
def test_mapping_labels(tmp_path, lab, num_classes, ignore):
    from agrinb.data.h5maps import write_sample, check_sample
    p = tmp_path / 's.h5'; write_sample(p, {'S2': np.zeros((2, 3, 4, 4), np.float32)}, lab)
    r = clean('h5maps.check_sample(labels)', check_sample, p, {'S2': 3}, num_classes, ignore)
    ok = ((lab == ignore) | ((lab >= 0) & (lab < num_classes))).all()
    assert (r is not None) == bool(ok)
