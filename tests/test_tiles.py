"Tile data, tasks, models and learners: real GeoTIFF / PNG files on disk, and the bad-input errors."
from pathlib import Path
import numpy as np, pytest, torch
from PIL import Image
from agrinb.core import AgrinbError
from agrinb.data.tiles import (make_sen12ms_tiles, write_sen12ms, read_sen12ms, make_deepglobe_images, write_deepglobe,
                               read_deepglobe, TileSet, random_conv_features, DFC_CLASSES, SEN12MS_BANDS, igbp_to_dfc)
from agrinb.tasks.tiles import sample_tile_task, deepglobe_task, TileTask, meta_split, channel_stats, stack_tasks
from agrinb.models.cnn import TileCNN, UNet
from agrinb.meta.tiles import TileLearner
from agrinb.eval import segmentation_scores

torch.set_num_threads(1)

@pytest.fixture(scope='module')
def sen_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('sen12ms')
    write_sen12ms(make_sen12ms_tiles(n_regions=3, n_tiles=30, size=16, seed=5), root)
    return root

def test_sen12ms_files_are_real_geotiffs(sen_root):
    import rioxarray
    f = next(sen_root.glob('ROIs1158_spring/s2_1/ROIs1158_spring_s2_1_p1.tif'))
    da = rioxarray.open_rasterio(f)
    assert da.shape == (13, 16, 16) and da.rio.crs is not None and abs(da.rio.resolution()[0]) == 10
    lc = rioxarray.open_rasterio(str(f).replace('s2', 'lc'))
    assert lc.shape[0] == 4 and set(np.unique(lc.values[0])) <= set(range(1, 18))

def test_read_sen12ms_matches_files(sen_root):
    ts = read_sen12ms(sen_root, progress=False)
    assert ts.x.shape == (180, 15, 16, 16) and ts.bands == SEN12MS_BANDS and ts.classes == DFC_CLASSES
    import rasterio
    i = 7
    with rasterio.open(ts.path[i]) as f: s2 = f.read()
    np.testing.assert_allclose(ts.x[i, :13], s2 / 1e4, rtol=1e-6)
    with rasterio.open(ts.path[i].replace('_s2_', '_lc_').replace('/s2_', '/lc_')) as f: lc = f.read(1)
    dfc = igbp_to_dfc(lc)
    assert ts.y[i] == np.bincount(dfc.ravel(), minlength=10).argmax()
    sub = read_sen12ms(sen_root, seasons=['summer'], regions=['2'], progress=False)
    assert set(sub.region) == {'2'} and set(sub.season) == {'summer'} and len(sub) == 30

@pytest.mark.parametrize('mod', ['s1', 's2', 'lc'])
def test_missing_partner_file(tmp_path, mod):
    write_sen12ms(make_sen12ms_tiles(n_regions=1, seasons=('fall',), n_tiles=3, size=8, seed=0), tmp_path)
    gone = tmp_path / 'ROIs1158_fall' / f'{mod}_1' / f'ROIs1158_fall_{mod}_1_p2.tif'
    gone.unlink()
    with pytest.raises(AgrinbError, match=f'its {mod} partner .*{gone.name}'): read_sen12ms(tmp_path, progress=False)

def test_partner_of_other_size(tmp_path):
    raw = make_sen12ms_tiles(n_regions=1, seasons=('fall',), n_tiles=2, size=8, seed=0)
    write_sen12ms(raw, tmp_path)
    import rasterio
    f = tmp_path / 'ROIs1158_fall' / 's1_1' / 'ROIs1158_fall_s1_1_p1.tif'
    with rasterio.open(f, 'w', driver='GTiff', height=4, width=4, count=2, dtype='float32') as d:
        d.write(np.zeros((2, 4, 4), np.float32))
    with pytest.raises(AgrinbError, match='s1_1_p1.tif.*size'): read_sen12ms(tmp_path, progress=False)

def test_mask_colour_not_in_table(tmp_path):
    src = make_deepglobe_images(n_images=2, size=32, seed=0)
    root = write_deepglobe(src, tmp_path)
    assert len(read_deepglobe(root, progress=False)) == 2
    bad = src['mask'][1].copy(); bad[3, 4] = (255, 0, 0)
    Image.fromarray(bad).save(root / '000002_mask.png')
    with pytest.raises(AgrinbError, match=r"000002_mask.png.*\(255, 0, 0\) at pixel \(row 3, col 4\)"):
        read_deepglobe(root, progress=False)
    bad[3, 4] = (128, 128, 128)  # half-way colour: not within the tolerance of any class colour
    Image.fromarray(bad).save(root / '000002_mask.png')
    with pytest.raises(AgrinbError, match=r'\(128, 128, 128\)'): read_deepglobe(root, progress=False)

def test_deepglobe_missing_mask(tmp_path):
    root = write_deepglobe(make_deepglobe_images(n_images=2, size=32, seed=0), tmp_path)
    (root / '000001_mask.png').unlink()
    with pytest.raises(AgrinbError, match='000001_mask.png'): read_deepglobe(root, progress=False)

def test_region_with_fewer_tiles_than_shots(sen_root):
    ts = read_sen12ms(sen_root, progress=False)
    with pytest.raises(AgrinbError, match=r"region 1 season spring.*at least 25 tiles each \(20 shots \+ 5 queries\)"):
        sample_tile_task(ts, n_way=4, k_shot=20, q_query=5, region='1', season='spring')
    with pytest.raises(AgrinbError, match='at most 32 support tiles'):
        deepglobe_task(np.zeros((3, 32, 32)), np.zeros((32, 32), int), k_shot=33)

def test_mixed_tile_sizes(sen_root):
    ts = read_sen12ms(sen_root, progress=False)
    t = sample_tile_task(ts, 3, 2, 2, rng=0)
    with pytest.raises(AgrinbError, match='mixed sizes'):
        TileTask(t.support_x, t.support_y, t.query_x[:, :, :8, :8], t.query_y, t.ways)
    with pytest.raises(AgrinbError, match='mixed sizes'):
        TileTask([t.support_x[0], t.support_x[1][:, :8]], t.support_y[:2], t.query_x, t.query_y, t.ways)
    small = TileTask(t.support_x[:, :, :8, :8], t.support_y, t.query_x[:, :, :8, :8], t.query_y, t.ways)
    with pytest.raises(AgrinbError, match='task 1'): stack_tasks([t, small])

def test_tasks_are_disjoint_and_from_one_group(sen_root):
    ts = read_sen12ms(sen_root, progress=False)
    rng = np.random.default_rng(0)
    for _ in range(10):
        t = sample_tile_task(ts, 3, 2, 3, rng=rng)
        g = ts.groups[(t.region, t.season)]
        sup = {ts.x[i].tobytes() for i in g}
        assert all(x.tobytes() in sup for x in np.concatenate([t.support_x, t.query_x]))
        assert not {x.tobytes() for x in t.support_x} & {x.tobytes() for x in t.query_x}
        assert sorted(np.unique(t.support_y)) == sorted(t.ways) and np.isin(t.query_y, t.ways).all()

def test_deepglobe_task_covers_image_once():
    src = make_deepglobe_images(n_images=1, size=64, seed=1)
    cols = np.array([(0, 255, 255), (255, 255, 0), (255, 0, 255), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)])
    mask = (src['mask'][0][..., None, :] == cols).all(-1).argmax(-1)
    x = src['image'][0].transpose(2, 0, 1) / 255.
    t = deepglobe_task(x, mask, k_shot=32, rng=3)
    assert t.support_x.shape == t.query_x.shape == (32, 3, 8, 8)
    allx = np.concatenate([t.support_x, t.query_x]).reshape(64, -1)
    assert len({r.tobytes() for r in allx}) == 64 and np.isclose(allx.sum(), x.sum())

def test_clustered_split_keeps_clusters_together():
    src = make_deepglobe_images(n_images=40, size=32, n_clusters=3, seed=2)
    f = random_conv_features(src['image'].transpose(0, 3, 1, 2) / 255.)
    sp = meta_split(np.arange(40), 'clustered', f, n_clusters=4, seed=0)
    from sklearn.cluster import KMeans
    lab = KMeans(4, n_init=10, random_state=0).fit_predict(f)
    for a in ('train', 'val', 'test'):
        for b in ('train', 'val', 'test'):
            if a != b: assert not set(lab[np.array(sp[a], int)]) & set(lab[np.array(sp[b], int)])

def test_models_batch_over_tasks():
    from torch.func import functional_call, vmap
    for m, x in ((TileCNN(15, 10), torch.randn(2, 5, 15, 32, 32)), (UNet(3, 7, base=4), torch.randn(2, 1, 3, 16, 16))):
        p = dict(m.named_parameters())
        with torch.no_grad():
            out = vmap(lambda xx: functional_call(m, p, (xx,)))(x)
            torch.testing.assert_close(out[1], m(x[1]), atol=1e-4, rtol=1e-4)

def test_adaptation_fits_support_and_learner_roundtrip(sen_root, tmp_path):
    ts = read_sen12ms(sen_root, progress=False)
    torch.manual_seed(0)
    l = TileLearner(TileCNN(15, 10, hidden=16), 'random', lr=0.1, steps=20, stats=channel_stats(ts.x))
    tasks = [sample_tile_task(ts, 3, 2, 2, rng=i) for i in range(4)]
    # query = support: adapting on the support must fit it better than not adapting
    same = [TileTask(t.support_x, t.support_y, t.support_x, t.support_y, t.ways) for t in tasks]
    b = l.batch(same)
    acc0 = (l.predict(b, l.adapt_many(b, steps=0)) == np.stack([t.query_y for t in same])).mean()
    acc10 = (l.predict(b, l.adapt_many(b)) == np.stack([t.query_y for t in same])).mean()
    assert acc10 >= 0.9 and acc10 > acc0
    # the protocol's one-task adapt gives the batched answer
    for i, t in enumerate(same):
        p = l.adapt(t); np.testing.assert_array_equal(p.predict(t.query_x), l.predict(b, l.adapt_many(b))[i])
        pr = p.predict_proba(t.query_x); assert pr.shape == (len(t.query_x), 3) and np.allclose(pr.sum(1), 1, atol=1e-5)
    l.save(tmp_path / 'l.pt'); l2 = TileLearner.load(tmp_path / 'l.pt')
    np.testing.assert_array_equal(l2.predict(b, l2.adapt_many(b)), l.predict(b, l.adapt_many(b)))
    np.testing.assert_array_equal(l2.stats.mean, l.stats.mean); np.testing.assert_array_equal(l2.stats.count, l.stats.count)

def test_maml_meta_training_lowers_query_loss(sen_root):
    ts = read_sen12ms(sen_root, progress=False)
    l = TileLearner(TileCNN(15, 10, hidden=16, n_blocks=3), 'maml', lr=0.4, steps=1, stats=channel_stats(ts.x))
    l.meta_fit(lambda r: sample_tile_task(ts, 3, 2, 2, rng=r), steps=60, meta_batch=4, progress=False)
    h = np.array(l.history)
    assert h[-15:].mean() < h[:15].mean()

@pytest.mark.parametrize('kind', ['maml', 'pretrained'])
def test_meta_fit_kill_and_resume_is_bit_identical(sen_root, tmp_path, kind):
    "A meta_fit killed after its step-3 checkpoint and resumed ends with the weights of an uninterrupted run."
    ts = read_sen12ms(sen_root, progress=False); st = channel_stats(ts.x)
    def run(d=None, resume=False, stop=None, **kw):
        torch.manual_seed(1); l = TileLearner(TileCNN(15, 10, hidden=8, n_blocks=2), kind, lr=0.3, stats=st, seed=1)
        n = [0]
        def sample(r, k):
            n[0] += 1
            if stop is not None and n[0] > stop: raise RuntimeError('killed')
            return sample_tile_task(ts, 3, k, 2, rng=r)
        return l.meta_fit(sample, steps=7, meta_batch=2, shots=(1, 2), checkpoint_dir=d, checkpoint_every=3,
                          resume=resume, progress=False, seed=4, **kw)
    full = run()
    with pytest.raises(RuntimeError, match='killed'): run(tmp_path, stop=9)  # dies in step 5, after the step-3 checkpoint
    assert (tmp_path / f'TileLearner-{kind}.pt').exists()
    resumed = run(tmp_path, resume=True)
    for k in full.theta: assert torch.equal(full.theta[k], resumed.theta[k]), k
    assert resumed.history == full.history and len(full.history) == 7
    with pytest.raises(AgrinbError, match='meta_batch'):
        TileLearner(TileCNN(15, 10, hidden=8, n_blocks=2), kind, stats=st).meta_fit(
            lambda r, k: sample_tile_task(ts, 3, k, 2, rng=r), steps=7, meta_batch=3, shots=(1, 2), checkpoint_dir=tmp_path,
            resume=True, progress=False, seed=4)

def test_segmentation_scores_against_sklearn():
    from sklearn.metrics import jaccard_score
    rng = np.random.default_rng(0); p, t = rng.integers(0, 4, 500), rng.integers(0, 4, 500)
    miou, acc = segmentation_scores(p, t, 7)
    assert np.isclose(miou, jaccard_score(t, p, average='macro', labels=[0, 1, 2, 3]))
    assert np.isclose(acc, (p == t).mean())

def test_viz_works_on_tiles_and_pixel_lstm():
    import matplotlib; matplotlib.use('Agg')
    from agrinb import viz
    from agrinb.models.lstm import LSTMClassifier
    lstm = LSTMClassifier(18, 16, 1, 0.0)
    model, p = viz.parts_of(lstm); lf = viz.loss_of(model, viz.binary_criterion)
    x, y = torch.randn(10, 12, 18), torch.randint(0, 2, (10,))
    phis = viz.adapted_weights(model, p, [(x[:5], y[:5]), (x[5:], y[5:])], lr=0.1)
    g = torch.func.grad(lf)(p, x[:5], y[:5])  # one step on the binary loss, by hand
    np.testing.assert_allclose(phis[0], viz.flatten({k: p[k] - 0.1 * g[k] for k in p}), rtol=1e-4, atol=1e-6)
    fig = viz.plot_adapted_weights(p, phis, ['a', 'b']); assert fig.axes
    L = viz.loss_along_gradient(lf, p, (x, y), [(x, y)], alphas=[0, 0.05])
    assert L.shape == (1, 2) and L[0, 1] < L[0, 0]
    cnn = TileCNN(15, 10, hidden=8)
    tl = TileLearner(cnn, 'random', lr=0.3)
    m2, p2 = viz.parts_of(tl)
    a, b, Z = viz.loss_surface(viz.loss_of(m2), p2, (torch.randn(6, 15, 16, 16), torch.randint(0, 10, (6,))), n=3)
    assert Z.shape == (3, 3) and np.isfinite(Z).all()
    # the pictures adapt exactly as the learner does (one primitive): viz on (x, local y, ways) == adapt_many
    xs, ys, ws = torch.randn(2, 4, 15, 16, 16), torch.randint(0, 3, (2, 4)), torch.tensor([[0, 4, 7], [1, 2, 9]])
    phi = tl.adapt_many(dict(sx=xs, sy=ys, ways=ws, seg=False), steps=2)
    vz = viz.adapted_weights(m2, p2, [(xs[i], ys[i], ws[i]) for i in range(2)], lr=0.3, steps=2)
    for i in range(2): np.testing.assert_allclose(vz[i], viz.flatten({k: v[i] for k, v in phi.items()}), rtol=1e-4, atol=1e-6)
    with pytest.raises(AgrinbError, match='weights'): viz.parts_of(object())

def test_task_loop_matches_vmap_gradients():
    "Ways.forward_tasks (one plain conv pass per task) gives the same adapted weights as a vmap over tasks."
    from torch.func import functional_call, vmap
    from agrinb.meta.tiles import Ways
    from agrinb.meta.core import stack_params, inner_loop, task_losses
    net = Ways(TileCNN(15, 10, hidden=8, n_blocks=3)); theta = dict(net.named_parameters())
    x, y = torch.randn(3, 8, 15, 16, 16), torch.randint(0, 4, (3, 8)); ways = torch.tensor([[0, 3, 5, 9], [1, 2, 3, 4], [9, 8, 0, 1]])
    loop = inner_loop(net, stack_params(theta, 3), x, y, ways, lr=0.3, steps=2, first_order=True)
    p = stack_params(theta, 3)
    for _ in range(2):
        out = vmap(lambda q, a, w: functional_call(net, q, (a, w)))(p, x, ways)
        g = torch.autograd.grad(task_losses(out, y).sum(), list(p.values()))
        p = {k: v - 0.3 * gi for (k, v), gi in zip(p.items(), g)}
    for k in p: torch.testing.assert_close(loop[k], p[k], atol=1e-5, rtol=1e-4)

def test_synthetic_tiles_are_few_shot_hard():
    "Within a region one shot per class does not separate the classes; more shots help (nearest class mean)."
    ts = TileSet(*(lambda r: (np.concatenate([r['s2'] / 1e4, (np.clip(r['s1'], -25, 0) + 25) / 25], 1), igbp_to_dfc(r['lc'][:, 0]),
                             r['region'], r['season']))(make_sen12ms_tiles(4, ('summer',), 80, 16, seed=4)), DFC_CLASSES, SEN12MS_BANDS)
    feat = lambda x: np.concatenate([x.mean((2, 3)), x.std((2, 3))], 1); f = feat(ts.x); m, s = f.mean(0), f.std(0) + 1e-6
    rng = np.random.default_rng(0); acc = {}
    for k in (1, 10):
        a = []
        for _ in range(40):
            t = sample_tile_task(ts, 4, k, 5, rng=rng); fs, fq = (feat(t.support_x) - m) / s, (feat(t.query_x) - m) / s
            proto = np.stack([fs[t.support_y == c].mean(0) for c in t.ways])
            a.append((t.ways[((fq[:, None] - proto[None]) ** 2).sum(-1).argmin(1)] == t.query_y).mean())
        acc[k] = np.mean(a)
    assert 0.3 < acc[1] < 0.85 and acc[10] > acc[1] + 0.1, acc

def test_support_and_query_never_share_a_tile(sen_root):
    "Over many sampled tasks and their k-shot supports, support and query tiles are disjoint by tile id."
    ts = read_sen12ms(sen_root, progress=False); rng = np.random.default_rng(7)
    for _ in range(300):
        t = sample_tile_task(ts, 3, int(rng.integers(1, 4)), int(rng.integers(1, 3)), rng=rng)
        for u in (t, t.shots(1, rng)):
            assert not set(u.support_ids) & set(u.query_ids)
            np.testing.assert_array_equal(u.support_x, ts.x[u.support_ids]); np.testing.assert_array_equal(u.query_x, ts.x[u.query_ids])
    img = make_deepglobe_images(n_images=1, size=64, seed=1)['image'][0].transpose(2, 0, 1) / 255.
    for i in range(100):
        t = deepglobe_task(img, np.zeros((64, 64), int), k_shot=int(rng.integers(1, 33)), q_query=int(rng.integers(1, 33)), rng=rng)
        for u in (t, t.shots(int(rng.integers(0, len(t.support_y) + 1)), rng)):
            assert not set(u.support_ids) & set(u.query_ids)
    with pytest.raises(AgrinbError, match='in both'):
        TileTask(t.support_x, t.support_y, t.query_x[:1], t.query_y[:1], t.ways, support_ids=t.support_ids, query_ids=t.support_ids[:1])
