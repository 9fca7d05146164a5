import dataclasses
"""agrinb.models.presto: the published embeddings reproduced from raw values, the normalisation, the shipped
weights, per-sample masks, bad inputs."""
from pathlib import Path
import numpy as np
import pytest
import torch
from agrinb.core import AgrinbError, load_checkpoint
from agrinb.data.pixels import CROPHARVEST_BANDS
from agrinb.models import presto

SHARED = Path(__file__).resolve().parent.parent / '..' / '..' / 'shared' / 'data' / 'presto'
if not SHARED.exists(): SHARED = Path('/work/shared/data/presto')
REF = SHARED / 'reference_embeddings.npz'
needs_ref = pytest.mark.skipif(not REF.exists(), reason=f'shared reference data absent ({REF})')


@pytest.fixture(scope='module')
def model(): return presto.pretrained('cpu')


@pytest.fixture(scope='module')
def ref(): return np.load(REF)


def _ref_embed(model, ref, which):
    m17 = {'full': None, 'masked': ref['mask'], 'ndvi_only': ref['mask_ndvi']}[which]
    mask = None if m17 is None else np.insert(m17, CROPHARVEST_BANDS.index('B9'), 0, axis=2).astype(bool)
    dw = np.full_like(ref['dynamic_world'], 9) if which == 'ndvi_only' else ref['dynamic_world']
    return model.embed(ref['x_raw'], ref['latlon'][:, 0], ref['latlon'][:, 1], month=ref['month'],
                       dynamic_world=dw, mask=mask, batch_size=300, progress=False)


@needs_ref
@pytest.mark.parametrize('which', ['full', 'masked', 'ndvi_only'])
def test_reference_embeddings(model, ref, which):
    emb = _ref_embed(model, ref, which)
    assert emb.dtype == np.float32 and emb.shape == (1122, 128)
    assert np.abs(emb - ref[f'emb_{which}']).max() <= 1e-5


@needs_ref
def test_reference_normalisation(ref):
    x, missing = presto.normalize(ref['x_raw'])
    assert np.abs(x - ref['x_normalized']).max() <= 1e-5 and not missing.any()


@needs_ref
def test_shipped_weights_equal_published(model):
    sd = torch.load(SHARED / 'default_model.pt', map_location='cpu', weights_only=True)
    mine = model.state_dict()
    assert set(sd) == set(mine)
    for k, v in sd.items(): assert torch.equal(v.cpu(), mine[k]), k


def test_checkpoint_kind_and_license():
    obj = load_checkpoint(presto.weights_path(), 'Presto')
    assert 'MIT' in obj['meta']['license']
    assert 'MIT License' in (presto.weights_path().parent / 'PRESTO_LICENSE').read_text()


def _series(n=6, T=12, seed=0):
    r = np.random.default_rng(seed)
    x = r.uniform(0, 3000, (n, T, 18)); x[..., :2] = r.uniform(-20, -5, (n, T, 2)); x[..., 13] = 290
    x[..., 14] = .001; x[..., 15] = 300; x[..., 16] = 2
    return x


def test_per_sample_masks_independent_of_batch(model):
    x = _series(); x[0, :4] = np.nan; x[2, :, 2:10] = np.nan; x[4, 7] = np.nan
    together = model.embed(x, 12., 5., month=2, progress=False)
    for i in range(len(x)):
        np.testing.assert_allclose(together[i], model.embed(x[i:i + 1], 12., 5., month=2, progress=False)[0], atol=1e-5)


def test_nan_equals_mask(model):
    x = _series(); hide = np.zeros(x.shape, bool); hide[1, 3:6, 2:4] = True  # B2, B3: hides S2_RGB (a NaN B4 would also hide NDVI)
    a = model.embed(x, 0., 0., mask=hide, progress=False)
    xn = x.copy(); xn[hide] = np.nan
    b = model.embed(xn, 0., 0., progress=False)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert np.abs(a[1] - model.embed(x, 0., 0., progress=False)[1]).max() > 1e-4


def test_short_series_and_months(model):
    x = _series(T=5)
    assert model.embed(x, 0., 0., month=11, progress=False).shape == (6, 128)
    per_step = (11 + np.arange(5))[None].repeat(6, 0) % 12
    np.testing.assert_allclose(model.embed(x, 0., 0., month=11, progress=False),
                               model.embed(x, 0., 0., month=per_step, progress=False), atol=1e-6)


@pytest.mark.parametrize('kwargs, field', [
    (dict(x=np.ones((2, 25, 18))), '1 to 24 time steps'),
    (dict(x=np.ones((12, 18))), "field 'x'"),
    (dict(lat=91.), "field 'lat'"),
    (dict(lon=-180.5), "field 'lon'"),
    (dict(lat=np.array([0., np.inf])), "field 'lat'"),
    (dict(x=np.full((2, 3, 18), np.inf)), 'inf'),
    (dict(x=np.full((2, 3, 18), np.nan)), 'every token hidden'),
    (dict(bands=CROPHARVEST_BANDS[:-1] + ['NVDI']), "Did you mean 'NDVI'"),
    (dict(month=12), "field 'month'"),
    (dict(dynamic_world=np.full((2, 3), 10)), "field 'dynamic_world'"),
])
def test_bad_inputs(model, kwargs, field):
    args = dict(x=np.ones((2, 3, 18)), lat=0., lon=0.) | kwargs
    x = args.pop('x')
    with pytest.raises(AgrinbError, match=None) as e: model.embed(x, progress=False, **args)
    assert field in str(e.value)


def test_reconstruct_raw_units(model):
    x = _series(); hide = np.zeros(x.shape, bool); hide[:, 6, 13] = True
    r = model.reconstruct(x, 30., 10., month=0, mask=hide, progress=False)
    assert r.shape == x.shape and np.isnan(r[..., 10]).all()
    assert 200 < np.median(r[:, 6, 13]) < 340   # kelvin, not the normalised value


def test_longest_series(model):
    x = _series(n=3, T=24)
    assert model.embed(x, 0., 0., month=5, progress=False).shape == (3, 128)


def test_probe_protocol_with_task(tmp_path):
    from agrinb.tasks import Task, TaskInfo
    from agrinb.meta.presto import PrestoProbe, PrestoEnsemble
    x = _series(n=12); y = np.r_[np.ones(6, int), np.zeros(6, int)]; x[y == 1, :, 8] += 2000  # crops: brighter NIR
    task = Task('t', x[::2].astype(np.float32), y[::2], x[1::2].astype(np.float32), y[1::2], TaskInfo(7., 1.))
    probe = PrestoProbe(device='cpu')
    assert probe.meta_fit([task]) is probe
    p = probe.adapt(task, seed=0).predict_proba(task.query_x)
    assert p.shape == (6,) and p[task.query_y == 1].min() > p[task.query_y == 0].max()
    probe.save(tmp_path / 'p.pt'); assert PrestoProbe.load(tmp_path / 'p.pt').C == probe.C
    e = PrestoEnsemble(seed=0).adapt(task).predict_proba(task.query_x)
    assert e.shape == (6,) and np.all((0 <= e) & (e <= 1))
    with pytest.raises(AgrinbError, match='lat/lon'): probe.adapt(task.support_x, task.support_y)


def _toy_embedded(n_tasks=12, n=60, seed=0):
    "Tasks whose positives lie along a direction shared by all tasks (plus a task-specific one): meta-learnable."
    from agrinb.meta.presto import EmbeddedTask
    from agrinb.tasks import TaskInfo
    r = np.random.default_rng(seed); shared = r.normal(size=128); shared /= np.linalg.norm(shared)
    out = []
    for i in range(n_tasks):
        own = r.normal(size=128); own /= np.linalg.norm(own)
        y = np.r_[np.ones(n // 2), np.zeros(n // 2)].astype(int)
        z = r.normal(size=(n, 128)) + np.outer(2 * y - 1, 1.2 * shared + .3 * own)
        out.append(EmbeddedTask(f't{i}', z.astype(np.float32), y, TaskInfo(float(r.uniform(-30, 30)), float(r.uniform(-60, 60)))))
    return out


def _auc(y, p): return float(((p[y == 1][:, None] > p[y == 0][None]).mean()))


def test_presto_timl_meta_fit_beats_fresh_head_and_round_trips(tmp_path):
    from agrinb.meta.presto import PrestoTIML
    tasks = _toy_embedded(); train, test = tasks[:9], tasks[9:]
    tl = PrestoTIML(device='cpu', fallback=False).meta_fit(train, steps=60, meta_batch=8, progress=False)
    fresh = PrestoTIML(device='cpu', fallback=False)   # the heads themselves, never the probe
    sup = np.r_[0:3, 30:33]; qry = np.setdiff1d(np.arange(60), sup)
    a_meta = np.mean([_auc(t.y[qry], tl.adapt(t.z[sup], t.y[sup], t.info, seed=0).predict_proba(t.z[qry])) for t in test])
    a_fresh = np.mean([_auc(t.y[qry], fresh.adapt(t.z[sup], t.y[sup], t.info, seed=0).predict_proba(t.z[qry])) for t in test])
    assert a_meta > a_fresh + .02, (a_meta, a_fresh)
    assert tl.best_val is not None and len(tl.history) == 60
    t = test[0]; pred = tl.adapt(t.z[sup], t.y[sup], t.info, seed=0)
    assert 0 <= pred.steps <= tl.hparams['max_steps']
    tl.save(tmp_path / 'timl.pt'); back = PrestoTIML.load(tmp_path / 'timl.pt', device='cpu')
    np.testing.assert_allclose(back.adapt(t.z[sup], t.y[sup], t.info, seed=0).predict_proba(t.z[qry]), pred.predict_proba(t.z[qry]), atol=1e-6)
    assert back.step_sizes == tl.step_sizes
    p0 = tl.adapt(t.z[sup], t.y[sup], t.info, steps=0).predict_proba(t.z[qry]); p5 = tl.adapt(t.z[sup], t.y[sup], t.info, steps=5).predict_proba(t.z[qry])
    assert np.abs(p0 - p5).max() > 1e-4


def test_presto_timl_meta_fit_on_small_tasks():
    "Tasks with fewer than k_query + 1 examples of a class (the quick demo's) still give episodes; 1 per class is refused."
    from agrinb.meta.presto import PrestoTIML
    small = _toy_embedded(n_tasks=6, n=12)   # 6 per class: below the default 10 queries + 1
    tl = PrestoTIML(device='cpu', fallback=False).meta_fit(small, steps=3, meta_batch=4, progress=False)
    assert len(tl.history) == 3 and all(np.isfinite(h['train_loss']) for h in tl.history)
    tiny = [dataclasses.replace(t, z=t.z[[0, -1]], y=t.y[[0, -1]]) for t in small]
    with pytest.raises(AgrinbError, match="field 'tasks'"): PrestoTIML(device='cpu').meta_fit(tiny, steps=2, progress=False)


def test_presto_timl_on_raw_task_and_errors():
    from agrinb.tasks import Task, TaskInfo
    from agrinb.meta.presto import PrestoTIML
    x = _series(n=12); y = np.r_[np.ones(6, int), np.zeros(6, int)]; x[y == 1, :, 8] += 2000
    task = Task('t', x[::2].astype(np.float32), y[::2], x[1::2].astype(np.float32), y[1::2], TaskInfo(7., 1.))
    tl = PrestoTIML(device='cpu')
    p = tl.adapt(task, seed=0).predict_proba(task.query_x)
    assert p.shape == (6,) and np.all((0 <= p) & (p <= 1))
    np.testing.assert_allclose(tl.adapt(task, seed=0).predict_proba(task.query_x, lat=7., lon=1.), p, atol=1e-6)
    with pytest.raises(AgrinbError, match='lat/lon'): tl.adapt(task.support_x, task.support_y)
    with pytest.raises(AgrinbError, match="field 'steps'"): tl.adapt(task, steps=-1)
    with pytest.raises(AgrinbError, match="field 'tasks'"): tl.meta_fit([])


def test_probe_reads_raw_series_and_checks_its_inputs():
    "Fitted on raw series, the probe's head reads embeddings + raw values: cached z= gives the same answer, embeddings alone are refused."
    from agrinb.meta.presto import PrestoProbe
    x = _series(n=16).astype(np.float32); y = np.r_[np.ones(8, int), np.zeros(8, int)]; x[y == 1, :, 8] += 2000
    probe = PrestoProbe(device='cpu'); z = probe.embed(x, 7., 1.)
    pred = probe.adapt(x[::2], y[::2], lat=7., lon=1., seed=0)
    assert pred.head.coef_.shape == (1, 128 + 12 * 18) and pred.chosen == 'probe'
    np.testing.assert_allclose(probe.adapt(x[::2], y[::2], z=z[::2], seed=0).predict_proba(x[1::2], z=z[1::2]),
                               pred.predict_proba(x[1::2]), atol=1e-5)
    with pytest.raises(AgrinbError, match='embeddings \\+ raw series'): pred.predict_proba(z[1::2])
    with pytest.raises(AgrinbError, match="field 'z'"): probe.adapt(x[::2], y[::2], z=z[:3])
    with pytest.raises(AgrinbError, match="field 'x'"): pred.predict_proba(x[1::2, :6], lat=7., lon=1.)
    emb = PrestoProbe(device='cpu', raw=False, standardize=False).adapt(x[::2], y[::2], lat=7., lon=1., seed=0)
    assert emb.head.coef_.shape == (1, 128) and emb.scale is None and emb.raw is None


def test_presto_timl_fallback_to_probe():
    "With fallback (the default) a head that cannot adapt (max_steps=0: its random start) hands over to the probe on a support set the probe separates; without fallback, never."
    from agrinb.meta.presto import PrestoTIML, ProbePredictor, TIMLPredictor
    from agrinb.tasks import TaskInfo
    x = _series(n=20).astype(np.float32); y = np.r_[np.ones(10, int), np.zeros(10, int)]; x[y == 1, :, 8] += 3000
    tl = PrestoTIML(device='cpu', max_steps=0); z = tl.probe.embed(x, 7., 1.)
    got = tl.adapt(x, y, TaskInfo(7., 1.), z=z, seed=0)
    assert isinstance(got, ProbePredictor) and got.chosen == 'probe', getattr(got, 'chosen', None)
    np.testing.assert_allclose(got.predict_proba(x, z=z), tl.probe.adapt(x, y, z=z, seed=0).predict_proba(x, z=z), atol=1e-9)
    tl.hparams['fallback'] = False
    head = tl.adapt(x, y, TaskInfo(7., 1.), z=z, seed=0)
    assert isinstance(head, TIMLPredictor) and head.chosen == 'head'
    np.testing.assert_allclose(head.predict_proba(x, z=z), head.predict_proba(z), atol=1e-6)
    with pytest.raises(AgrinbError, match="field 'z'"): tl.adapt(x, y, TaskInfo(7., 1.), z=z[:, :64])


def test_finetune_adapts_a_copy_and_checks_inputs(tmp_path):
    "PrestoFineTune moves its copy's weights (not the shipped model's), keeps the fixed tables, refuses embeddings and bad steps."
    from agrinb.meta.presto import PrestoFineTune
    x = _series(n=8).astype(np.float32); y = np.r_[np.ones(4, int), np.zeros(4, int)]; x[y == 1, :, 8] += 2000
    ft = PrestoFineTune(steps=2, lr=1e-3, device='cpu'); shipped = {n: w.clone() for n, w in ft.probe.model.encoder.state_dict().items()}
    pred = ft.adapt(x, y, lat=7., lon=1., seed=0)
    moved = {n for n, w in pred.encoder.state_dict().items() if not torch.equal(w, shipped[n])}
    assert 'blocks.0.attn.qkv.weight' in moved and 'pos_embed' not in moved and 'month_embed.weight' not in moved
    assert all(torch.equal(w, shipped[n]) for n, w in ft.probe.model.encoder.state_dict().items())
    p = pred.predict_proba(x); assert p.shape == (8,) and np.all((0 <= p) & (p <= 1))
    with pytest.raises(AgrinbError, match='raw series'): ft.adapt(ft.probe.embed(x, 7., 1.), y)
    with pytest.raises(AgrinbError, match="field 'steps'"): ft.adapt(x, y, lat=7., lon=1., steps=-1)
    with pytest.raises(AgrinbError, match='lat/lon'): ft.adapt(x, y)
    ft.save(tmp_path / 'ft.pt'); assert PrestoFineTune.load(tmp_path / 'ft.pt').settings() == ft.settings()


def _toy_raw(n_tasks=10, n=40, T=4, B=3, seed=0):
    "EmbeddedTasks whose class lives in the raw series (one band shifted, some values missing), not in the random embeddings."
    from agrinb.meta.presto import EmbeddedTask
    from agrinb.tasks import TaskInfo
    r = np.random.default_rng(seed); out = []
    for i in range(n_tasks):
        y = np.r_[np.ones(n // 2), np.zeros(n // 2)].astype(int)
        x = r.normal(size=(n, T, B)).astype(np.float32); x[:, :, 1] += 1.5 * (2 * y[:, None] - 1); x[r.random(x.shape) < .05] = np.nan
        out.append(EmbeddedTask(f'r{i}', r.normal(size=(n, 128)).astype(np.float32), y, TaskInfo(float(r.uniform(-30, 30)), 10.), x))
    return out


def test_presto_timl_head_reads_raw_series(tmp_path):
    "Tasks that carry raw series give a head over embeddings + raw values (gaps: the training mean) that learns what lives only in "
    "the raw series; it refuses embeddings alone or another layout by name; raw=False keeps the embeddings-only head; save / load round-trips."
    from agrinb.meta.presto import PrestoTIML
    tasks = _toy_raw(); train, t = tasks[:8], tasks[9]
    tl = PrestoTIML(device='cpu', fallback=False).meta_fit(train, steps=40, meta_batch=4, progress=False)
    assert tl.hparams['raw_shape'] == [4, 3] and tl.head.w1.shape[0] == 128 + 12 and torch.isfinite(tl.head.mean).all()
    sup = np.r_[0:5, 20:25]; qry = np.setdiff1d(np.arange(40), sup)
    pred = tl.adapt(t.x[sup], t.y[sup], t.info, z=t.z[sup], seed=0); p = pred.predict_proba(t.x[qry], z=t.z[qry])
    assert np.isfinite(p).all() and _auc(t.y[qry], p) > .8, _auc(t.y[qry], p)
    with pytest.raises(AgrinbError, match="field 'x'"): tl.adapt(t.z[sup], t.y[sup], t.info)
    with pytest.raises(AgrinbError, match="field 'x'"): pred.predict_proba(t.z[qry])
    with pytest.raises(AgrinbError, match="field 'x'"): pred.predict_proba(t.x[qry][:, :2], z=t.z[qry])
    tl.save(tmp_path / 'raw.pt'); back = PrestoTIML.load(tmp_path / 'raw.pt', device='cpu')
    np.testing.assert_allclose(back.adapt(t.x[sup], t.y[sup], t.info, z=t.z[sup], seed=0).predict_proba(t.x[qry], z=t.z[qry]), p, atol=1e-6)
    emb = PrestoTIML(device='cpu', raw=False, fallback=False).meta_fit(train, steps=2, meta_batch=4, progress=False)
    assert emb.hparams['raw_shape'] is None and emb.head.w1.shape[0] == 128
    assert _auc(t.y[qry], emb.adapt(t.z[sup], t.y[sup], t.info, seed=0).predict_proba(t.z[qry])) < .8   # the class is not in z


def test_adapt_reports_progress():
    "Every Presto learner's adapt calls progress(done, total) after each step (done rises by one; work that ends early says so "
    "once more with total = done)."
    from agrinb.meta.presto import PrestoTIML, PrestoProbe, PrestoEnsemble, PrestoFineTune
    def calls(fn):
        seen = []; fn(lambda d, t: seen.append((d, t)))
        d = [d for d, _ in seen]
        assert seen and d[0] == 1 and set(np.diff(d)) <= {0, 1} and seen[-1][0] == seen[-1][1], seen
        return seen
    tasks = _toy_raw(); t = tasks[0]; sup = np.r_[0:5, 20:25]
    tl = PrestoTIML(device='cpu', max_steps=6)
    assert calls(lambda cb: tl.adapt(t.z[sup], t.y[sup], t.info, steps=4, progress=cb)) == [(i, 4) for i in range(1, 5)]
    chose = calls(lambda cb: tl.adapt(t.z[sup], t.y[sup], t.info, seed=0, progress=cb))   # 6 curve steps, 5 probe folds, then its choice
    assert chose[0] == (1, 6 + 5 + 6) and len(chose) >= 11
    x = _series(n=8).astype(np.float32); y = np.r_[np.ones(4, int), np.zeros(4, int)]
    probe = PrestoProbe(device='cpu')
    assert calls(lambda cb: probe.adapt(x, y, lat=7., lon=1., progress=cb)) == [(1, 2), (2, 2)]   # embedding, then the fit
    assert calls(lambda cb: probe.adapt(probe.embed(x, 7., 1.), y, progress=cb)) == [(1, 1)]
    assert calls(lambda cb: PrestoEnsemble(probe).adapt(x, y, lat=7., lon=1., seed=0, progress=cb)) == [(1, 3), (2, 3), (3, 3)]
    assert calls(lambda cb: PrestoFineTune(steps=2, device='cpu').adapt(x, y, lat=7., lon=1., seed=0, progress=cb)) == [(1, 3), (2, 3), (3, 3)]
