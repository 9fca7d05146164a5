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
CASES, ACCEPTED = collections.Counter(), collections.Counter()   # tried; of those, accepted (no AgrinbError)

@pytest.fixture(scope='module', autouse=True)
def report():
    yield
    print('\nfuzz cases per entry point (tried, accepted):', {k: (v, ACCEPTED[k]) for k, v in sorted(CASES.items())})

def clean(name, fn, *a, **kw):
    "Run `fn`; an AgrinbError is a clean refusal (None), any other exception fails the test."
    CASES[name] += 1
    try: out = fn(*a, **kw)
    except AgrinbError as ex:
        assert str(ex).strip(), f'{name}: an AgrinbError without a message'
        return None
    ACCEPTED[name] += 1
    return out

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
       st.sampled_from(['crop', 'maize', 'non_crop', 'bogus', 'rice']), st.booleans())
def test_task_and_info(sx, qx, sy, qy, lat, lon, target, tame):
    if tame:   # a valid task too: finite series of one layout, both classes, a real place
        sx, qx = np.ones((4, 3, 2)) * np.arange(4)[:, None, None], np.ones((2, 3, 2)); sy, qy, lat, lon = [0, 1, 0, 1], [1, 0], 10., 20.
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
    if cmd == 'demo':   # only the fast-failing demo calls: a bad --json path must fail before the (long) run
        assume('--json' in args and args[args.index('--json') + 1:][:1] == ['BAD/PATH/x.json'])
    if cmd == 'make-demo-data': assume('--size' in argv); argv.insert(1, str(tmp_path / 'demo'))
    out, err = io.StringIO(), io.StringIO()
    CASES['cli.main'] += 1
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), contextlib.chdir(tmp_path):   # nothing lands in the checkout
        try: rc = main(argv)
        except SystemExit as ex: rc = ex.code   # argparse's usage errors exit 2
    assert rc in (0, 2), (argv, rc, err.getvalue()[-500:])
    ACCEPTED['cli.main'] += rc == 0
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
       st.one_of(st.integers(-1, 3)), lrate, rate, st.sampled_from([0.5, float('nan'), float('inf')]), st.booleans(), st.booleans())
def test_fit_loop_degenerate(steps, seed, val_every, lr, dropout, val_value, with_val, tame):
    if tame: steps, seed, val_every, lr, dropout, val_value = max(int(steps or 1), 1), 1, 2, 0.1, 0.1, 0.5   # a valid run too
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

# ---- tables, datasets, learner layouts, benchmark splits, raster maps, Earth Engine exports (issue 15, third part) ----
import pandas as pd
value_cols = st.lists(st.sampled_from(['B4_t1', 'B4_t01', 'B4_t02', 'B8_t01', 'B8_t02', 'NDVI_t03', 'X17', 'B2_20190301', 'junk']),
                      min_size=0, max_size=5)
own_cols = st.one_of(st.just(['lat', 'lon', 'label']), st.lists(st.sampled_from(['lat', 'lon', 'label']), max_size=3))
label_values = st.one_of(st.sampled_from(['maize', 'non_crop', 'rice']), st.sampled_from([None, np.nan, 'no', '', 0, 1.5]))
finite = st.floats(-1e3, 1e3)

@fuzz(120)
@given(own_cols, value_cols, st.integers(0, 4), st.booleans(), st.data())
def test_from_dataframe(own, cols, n, tame, data):
    "A user's wide table: duplicate or clashing columns, wild values and coordinates, odd labels (or a tame one)."
    cols = list(dict.fromkeys(own + cols))
    def column(c):
        if c in ('lat', 'lon'): return st.floats(-90, 90) if tame else coord
        if c == 'label': return st.sampled_from(['maize', 'non_crop']) if tame else label_values
        return finite if tame else wild
    df = pd.DataFrame({c: data.draw(st.lists(column(c), min_size=n, max_size=n)) for c in cols})
    d = clean('PixelDataset.from_dataframe', PixelDataset.from_dataframe, df)
    if d is None: return
    assert {'lat', 'lon', 'label'} <= set(cols) and len(d.x) == n and n > 0
    assert not np.isinf(d.x).any() and (np.abs(d.lat) <= 90).all() and np.isfinite(d.lon).all()
    assert all(isinstance(l, str) and l and l not in ('None', 'nan') for l in d.labels)
    assert not ({'B4_t1', 'B4_t01'} <= set(cols))          # two columns for one (band, time) are refused, not overwritten

def _ds(n, bands, times, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, len(times), len(bands))).astype(np.float32)
    return PixelDataset.from_arrays(x, [0.] * n, [0.] * n, ['a'] * n, bands=list(bands), times=np.asarray(times))

@fuzz(60)
@given(st.lists(st.tuples(st.integers(1, 3), st.sampled_from([('B2', 'B3'), ('B3', 'B2'), ('B2',), ('B2', 'B3', 'B4')]),
                          st.sampled_from([(0, 1), (1, 2), (0, 1, 2)])), min_size=0, max_size=3))
def test_concat_datasets(parts):
    "Datasets of other bands or times are refused (no NaN padding, no silent reordering)."
    ds = [_ds(n, b, t, i) for i, (n, b, t) in enumerate(parts)]
    d = clean('concat_datasets', concat_datasets, ds)
    if d is None: return
    assert len({(b, t) for _, b, t in parts}) == 1 and len(d.x) == sum(n for n, _, _ in parts)
    assert np.array_equal(d.x, np.concatenate([p.x for p in ds])) and d.bands == list(parts[0][1])

_LEARNERS = {}
def _fitted(kind):
    "Small learners meta-fitted once on 6-step, 4-band toy tasks (their layout)."
    if kind not in _LEARNERS:
        from agrinb.tasks.pixels import toy_tasks
        from agrinb.meta.maml import MAML
        from agrinb.meta.timl import TIML
        from agrinb.meta.baselines import RandomForest, ProtoNet
        tasks = toy_tasks(4, n=24, T=6, B=4, seed=0)
        l = {'MAML': lambda: MAML(4, hidden=8, device='cpu', seed=0), 'TIML': lambda: TIML(4, hidden=8, device='cpu', seed=0),
             'ProtoNet': lambda: ProtoNet(4, hidden=8, device='cpu', seed=0), 'RandomForest': lambda: RandomForest(seed=0, n_estimators=5)}[kind]()
        if kind in ('MAML', 'TIML'): l.meta_fit(tasks, tasks[:1], steps=1, meta_batch=2, k_support=3, k_query=2, progress=False)
        elif kind == 'ProtoNet': l.meta_fit(tasks, steps=1, meta_batch=2, k=3, q=2, progress=False)
        _LEARNERS[kind] = (l, tasks[0])
    return _LEARNERS[kind]

shape_tb = st.one_of(st.just((6, 4)), st.tuples(st.sampled_from([0, 1, 3, 6, 24]), st.sampled_from([0, 1, 4, 5])))
poison = st.one_of(st.none(), st.none(), st.none(), st.sampled_from([np.nan, np.inf, -np.inf, 1e39]))   # mostly clean
@fuzz(80)
@given(st.sampled_from(['MAML', 'TIML', 'ProtoNet', 'RandomForest']), shape_tb, shape_tb, st.integers(0, 8), poison,
       st.one_of(st.none(), st.none(), st.none(), st.sampled_from([2, 0.5, -1])), st.data())
def test_learner_layouts(kind, sup_tb, qry_tb, n, bad_x, bad_y, data):
    "adapt / predict_proba with other steps or bands than the learner's, a non-finite value, an odd label (or none)."
    learner, task = _fitted(kind)
    if data.draw(st.booleans(), label='tame'): sup_tb, qry_tb, n, bad_x, bad_y = (6, 4), (6, 4), max(n, 2), None, None
    sx = data.draw(arrays(np.float64, (n, *sup_tb), elements=st.floats(-3, 3)))
    if bad_x is not None and sx.size: sx.flat[0] = bad_x
    sy = np.arange(n) % 2
    if bad_y is not None and n: sy = sy.astype(float); sy[-1] = bad_y
    kw = {} if kind in ('RandomForest', 'ProtoNet') else {'steps': 2}
    p = clean(f'{kind}.adapt', learner.adapt, sx, sy, info=task.info, **kw)
    if p is None: return
    layout = sup_tb if kind == 'RandomForest' else (6, 4)   # the forest learns nothing before the task: any layout
    assert sup_tb == layout and min(layout) >= 1 and np.isfinite(sx).all() and set(sy.tolist()) == {0, 1}
    qx = data.draw(arrays(np.float32, (data.draw(st.integers(0, 4)), *qry_tb), elements=st.floats(-3, 3, width=32)))
    pr = clean(f'{kind}.predict_proba', p.predict_proba, qx)
    if pr is None: return
    assert qry_tb == layout and pr.shape == (len(qx),) and ((pr >= 0) & (pr <= 1)).all()

@fuzz(60)
@given(st.data())
def test_benchmark_splits(data):
    "User-given (support, query) positions: out of range, empty, overlapping, not integers, not pairs."
    from agrinb.eval import benchmark_runs
    from agrinb.meta.baselines import RandomForest
    _, task = _fitted('MAML'); n = len(task.y)
    pos = st.one_of(st.lists(st.integers(-2, n + 2), max_size=8).map(np.asarray), st.just(np.array([0.5, 1.5])),
                    st.just(np.arange(0, n, 2)), st.just(np.arange(1, n, 2)))
    halves = st.permutations(range(n)).map(lambda p: (np.asarray(p[:n // 2]), np.asarray(p[n // 2:])))   # a valid pair
    pair = st.one_of(halves, st.tuples(pos, pos), st.just((np.arange(3),)), st.just('0,1'))
    splits = data.draw(st.one_of(st.lists(halves, min_size=1, max_size=3).map(lambda v: {task.name: v}),
                                 st.lists(pair, max_size=3).map(lambda v: {task.name: v}), st.just({'nope': []}), st.just([1])))
    runs = clean('benchmark_runs(splits)', benchmark_runs, {'rf': RandomForest(seed=0, n_estimators=5)}, [task], splits=splits,
                 progress=False, calibrate=False)
    if runs is None: return
    pairs = splits[task.name]
    assert set(runs.setting) == {'fixed'} and len(runs) == len(pairs)   # one learner (the forest is the reference)
    for s, q in pairs:   # each run's support and query are disjoint real positions, both classes in the support
        assert len(set(s) & set(q)) == 0 and s.min() >= 0 and q.max() < n and len(set(task.y[s])) == 2
    assert runs.auc_roc.dropna().between(0, 1).all()

@fuzz(40)
@given(st.sampled_from([6, 6, 6, 0, 3, 12]),
       st.one_of(st.permutations(['B2', 'B3', 'B4', 'B8', 'NDVI', 'VV']), st.permutations(['B8', 'B4', 'B3', 'B2']),
                 st.permutations(['B2', 'B3', 'B4', 'B8', 'NDVI']).map(lambda b: b[1:])),   # the learner's bands in any order, or one missing
       st.sampled_from([16, 256, 8, -16, 0]), st.sampled_from([None, np.nan, None, np.inf, 1e39]), st.booleans(), st.booleans())
def test_predict_raster(tmp_path, n_time, bands, chunk, bad, to_file, tame):
    "Maps of rasters with other steps or bands, bad chunk sizes, gaps and non-finite pixels, in memory or a GeoTIFF."
    if tame: n_time, chunk, bad = 6, max(chunk, 16) // 16 * 16, None if bad is None else np.nan
    if tame and not {'B2', 'B3', 'B4', 'B8'} <= set(bands): bands = ['B8', 'B2', 'B4', 'B3', 'VV']
    import xarray as xr
    from agrinb.predict import predict_raster
    learner, task = _fitted('MAML'); pred = learner.adapt(task, steps=2)
    v = np.random.default_rng(0).normal(size=(n_time, len(bands), 5, 4))
    if bad is not None and v.size: v[0, 0, 1, 1] = bad
    r = xr.DataArray(v, dims=('time', 'band', 'y', 'x'), coords={'band': bands, 'y': 8. - .01 * np.arange(5), 'x': 1. + .01 * np.arange(4)})
    out = tmp_path / f"m{CASES['predict_raster']}.tif" if to_file else None
    stats = BandStats.empty(4).update(task.x)   # the learner's normalisation: gaps are filled, values scaled
    m = clean('predict_raster', predict_raster, pred, r, out, stats, bands=['B2', 'B3', 'B4', 'B8'], n_time=6, chunk=chunk, progress=False)
    if m is None: return
    assert n_time == 6 and {'B2', 'B3', 'B4', 'B8'} <= set(bands) and chunk >= 16 and chunk % 16 == 0
    if to_file:
        import rasterio
        with rasterio.open(m) as g: m = g.read(1)
    m = np.asarray(m); ok = ~np.isnan(m)
    assert m.shape == (5, 4) and ((m[ok] >= 0) & (m[ok] <= 1)).all() and not np.isinf(m).any()
    assert ok.all() or (bad is not None and np.isnan(bad))   # only a pixel with no value at all is left unmapped

@fuzz(30)
@given(st.sampled_from([206, 206, 205, 3]), st.sampled_from([None, np.nan, np.inf, -1e39, 0.]), st.sampled_from(['EPSG:4326', None]),
       st.sampled_from([None, 'EPSG:4326', 'EPSG:32631']))
def test_engineer_tif(tmp_path, n_bands, bad, crs, given_crs):
    "A raw Earth Engine export: wrong band count, non-finite pixels, no CRS."
    import xarray as xr, rioxarray  # noqa: F401
    from agrinb.data.cropharvest import engineer_tif
    v = np.random.default_rng(0).uniform(100, 3000, size=(n_bands, 3, 2))
    if bad is not None: v[:, 0, 0] = bad
    da = xr.DataArray(v, dims=('band', 'y', 'x'), coords={'band': np.arange(1, n_bands + 1), 'y': 8. - 1e-3 * np.arange(3), 'x': 1. + 1e-3 * np.arange(2)})
    p = tmp_path / f"e{CASES['engineer_tif']}.tif"; (da.rio.write_crs(crs) if crs else da).rio.to_raster(p)
    d = clean('engineer_tif', engineer_tif, p, crs=given_crs)
    if d is None: return
    assert n_bands == 206 and (crs or given_crs) and d.x.shape == (6, 12, 18)
    assert not np.isinf(d.x).any() and (np.abs(d.lat) <= 90).all()

@fuzz(30)
@given(st.sampled_from(['ee', 'nc']), st.sampled_from([None, None, 'nan_step', 'nan_pixel', np.inf, 1e39, 'damaged']),
       st.sampled_from([None, 2, 3, 16]), st.booleans())
def test_session_on_file(tmp_path, kind, bad, chunk, tame):
    "The map session on a raster it reads lazily from a file: gaps, non-finite values, damaged blocks, any chunking."
    if tame: bad = None if bad in ('damaged', 1e39) else bad
    import xarray as xr, rioxarray  # noqa: F401
    from agrinb.data.synthetic import make_datacube
    from agrinb.data.raster import load_raster
    from agrinb.data.cropharvest import N_RAW_BANDS
    from agrinb.app import LabelingSession
    from agrinb.meta.baselines import RandomForest
    cube = make_datacube('Togo', size=(6, 5), seed=1).drop_vars(['label', 'subtype', 'field'])
    p = tmp_path / f"s{CASES['LabelingSession(file)']}.{'tif' if kind == 'ee' else 'nc'}"
    if kind == 'ee':   # a raw export: 12 steps x 17 dynamic bands, then the 2 static ones (random reflectances)
        v = np.random.default_rng(0).uniform(100, 3000, size=(N_RAW_BANDS, 6, 5))
        raw = xr.DataArray(v, dims=('band', 'y', 'x'), coords={'band': np.arange(1, N_RAW_BANDS + 1), 'y': cube.y.values, 'x': cube.x.values})
    else: raw = cube.astype(np.float64)
    if bad == 'nan_step': raw[3 if kind == 'nc' else slice(51, 68)] = np.nan
    elif bad == 'nan_pixel': raw[..., 2, 2] = np.nan
    elif bad is not None and bad != 'damaged': raw[..., 1, 3] = bad
    if kind == 'ee': raw.rio.write_crs('EPSG:4326').rio.to_raster(p, compress='lzw')
    else: raw.to_netcdf(p)
    if bad == 'damaged':
        b = bytearray(p.read_bytes()); b[len(b) // 2:len(b) // 2 + 256] = bytes(256); p.write_bytes(bytes(b))
    r = clean('load_raster(file)', load_raster, p, chunk=chunk or 'auto')
    if r is None: return
    s = clean('LabelingSession(file)', LabelingSession, r, learner=RandomForest(seed=0, n_estimators=5), stats='raster', progress=False)
    if s is None: return
    assert s.raster.chunks is not None and bad not in (np.inf, 1e39)
    for (i, j), c in [((0, 0), 'crop'), ((1, 4), 'crop'), ((5, 0), 'non_crop'), ((4, 3), 'non_crop')]:
        s.add_label(float(s.raster.lat.values[i, j]), float(s.raster.lon.values[i, j]), c)
    if clean('LabelingSession.adapt(file)', s.adapt) is None: return
    m = s.predict().values
    assert m.shape == (6, 5) and np.isfinite(m).all() and ((m >= 0) & (m <= 1)).all()
