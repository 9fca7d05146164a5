"""agrinb.eval: metrics against independent computations, the paired AUC-minus-random-forest, standard errors,
bad inputs."""
import dataclasses, math
import numpy as np
import pandas as pd
import pytest, torch
from agrinb.core import AgrinbError
from agrinb import eval as ev


def auc_by_pairs(y, p):
    "AUC as the fraction of (positive, negative) pairs ordered correctly, ties counting 1/2."
    pos, neg = p[y == 1], p[y == 0]
    diff = pos[:, None] - neg[None, :]
    return ((diff > 0).sum() + .5 * (diff == 0).sum()) / diff.size


def counts(y, pred):
    return [int(((pred == a) & (y == b)).sum()) for a, b in ((1, 1), (1, 0), (0, 1), (0, 0))]


@pytest.mark.parametrize('seed', range(5))
def test_metrics_match_definitions(seed):
    r = np.random.default_rng(seed)
    y = r.integers(0, 2, 50); y[:2] = [0, 1]
    p = np.round(r.random(50), 1)                       # ties on purpose
    thr = .4 + .1 * seed
    m = ev.binary_metrics(y, p, threshold=thr)
    tp, fp, fn, tn = counts(y, (p >= thr).astype(int))
    n = len(y)
    po = (tp + tn) / n
    pe = ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / n**2
    assert m['auc_roc'] == pytest.approx(auc_by_pairs(y, p))
    assert m['f1'] == pytest.approx(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0)
    assert m['accuracy'] == pytest.approx(po)
    assert m['kappa'] == pytest.approx((po - pe) / (1 - pe))
    assert m['iou'] == pytest.approx(tp / (tp + fp + fn))


def test_perfect_and_inverted_scores():
    y = np.array([0, 0, 1, 1])
    assert ev.binary_metrics(y, [.1, .2, .8, .9]) == pytest.approx(
        {'auc_roc': 1., 'f1': 1., 'accuracy': 1., 'kappa': 1., 'iou': 1.})
    m = ev.binary_metrics(y, [.9, .8, .2, .1])
    assert m['auc_roc'] == 0. and m['f1'] == 0. and m['iou'] == 0. and m['kappa'] == pytest.approx(-1.)


def test_best_threshold_beats_every_cut():
    r = np.random.default_rng(3)
    y = (r.random(200) < .2).astype(int)
    p = np.clip(r.normal(.3 + .3 * y, .2), 0, 1)
    t = ev.best_threshold(y, p)
    best = max(counts_f1(y, p >= c) for c in np.unique(p))
    assert counts_f1(y, p >= t) == pytest.approx(best)


def counts_f1(y, pred):
    tp, fp, fn, _ = counts(y, pred.astype(int))
    return 2 * tp / (2 * tp + fp + fn)


def test_standard_error_formula():
    x = np.array([.70, .74, .71, .77, .73])
    n = len(x)
    var = ((x - x.mean())**2).sum() / (n - 1)
    assert ev.standard_error(x) == pytest.approx(math.sqrt(var / n))
    assert math.isnan(ev.standard_error([.5]))


@pytest.mark.parametrize('bad, msg', [
    (([1, 0], [.1]), 'one probability per label'),
    (([], []), 'non-empty'),
    (([1, 1, 1], [.1, .2, .3]), 'both classes'),
    (([0, 2], [.1, .2]), 'labels in {0, 1}'),
    (([0, 1], [.1, np.nan]), 'finite'),
])
def test_bad_metric_inputs(bad, msg):
    with pytest.raises(AgrinbError, match=msg): ev.binary_metrics(*bad)


# ---- the benchmark, with small learners that follow the learner protocol ----

@dataclasses.dataclass
class Toy:
    name: str
    support_x: np.ndarray
    support_y: np.ndarray
    query_x: np.ndarray
    query_y: np.ndarray
    info: object = None


def toy(seed, name, n=80, nq=60, shift=1.):
    r = np.random.default_rng(seed)
    def draw(m):
        y = (r.random(m) < .3).astype(np.int64); y[:2] = [1, 0]
        return (r.normal(size=(m, 4, 3)) + shift * y[:, None, None]).astype(np.float32), y
    (sx, sy), (qx, qy) = draw(n), draw(nq)
    return Toy(name, sx, sy, qx, qy)


class Pred:
    def __init__(self, f): self.f = f
    def predict_proba(self, x): return self.f(np.asarray(x).reshape(len(x), -1))


class NearestMean:
    "Logistic score along the difference of class means; records the supports it saw."
    def __init__(self): self.seen = []
    def adapt(self, support, support_y=None, info=None, steps=None, seed=None, device=None):
        x, y = support.support_x.reshape(len(support.support_y), -1), support.support_y
        self.seen.append(support.support_x.copy())
        mu1, mu0 = x[y == 1].mean(0), x[y == 0].mean(0)
        return Pred(lambda q: 1 / (1 + np.exp(-(q - (mu1 + mu0) / 2) @ (mu1 - mu0))))


def test_paired_auc_minus_rf_uses_the_same_supports():
    from agrinb.meta.baselines import RandomForest
    tasks = [toy(1, 'A'), toy(2, 'B')]
    nm = NearestMean()
    runs = ev.benchmark_runs({'mean': nm, 'Random forest': RandomForest(seed=0, n_estimators=20)}, tasks, n_runs=5, shots=[5],
                             progress=False, calibrate=False)
    s = ev.summarize(runs)
    for task in 'AB':
        sub = runs[(runs.task == task) & (runs.setting == 'shots')]
        d = sub[sub.model == 'mean'].auc_roc.to_numpy() - sub[sub.model == 'Random forest'].auc_roc.to_numpy()
        row = s[(s.model == 'mean') & (s.task == task) & (s.setting == 'shots')].iloc[0]
        assert row.auc_minus_rf == pytest.approx(d.mean())
        assert row.auc_minus_rf_se == pytest.approx(d.std(ddof=1) / math.sqrt(5))
        assert row.n_runs == 5
    # 5-shot supports differ between runs, and the whole support is used in 'all'
    shots = [x for x in nm.seen if len(x) == 10]
    assert len(shots) == 10 and not np.array_equal(shots[0], shots[1])
    assert sum(len(x) == 80 for x in nm.seen) == 10


def test_random_forest_added_when_missing_and_reproducible():
    tasks = [toy(4, 'C')]
    a = ev.run_benchmark({'mean': NearestMean()}, tasks, n_runs=3, shots=[4], sizes=[20], progress=False, seed=7)
    b = ev.run_benchmark({'mean': NearestMean()}, tasks, n_runs=3, shots=[4], sizes=[20], progress=False, seed=7)
    assert set(a.model) == {'mean', ev.RF_NAME}
    assert set(zip(a.setting, a['size'])) == {('all', 80), ('shots', 8), ('size', 20)}
    pd.testing.assert_frame_equal(a.drop(columns=['seconds', 'seconds_se']), b.drop(columns=['seconds', 'seconds_se']))
    for col in ('auc_roc', 'auc_roc_se', 'f1', 'f1_se', 'f1_calibrated', 'f1_calibrated_se', 'auc_minus_rf',
                'auc_minus_rf_se', 'accuracy', 'kappa', 'iou'):
        assert col in a
    assert (a[a.model == ev.RF_NAME].auc_minus_rf == 0).all()


def test_calibrated_threshold_never_sees_the_query():
    t = toy(5, 'D')
    t2 = dataclasses.replace(t, query_x=t.query_x * 0 + 100, query_y=t.query_y)
    r1, r2 = np.random.default_rng(0), np.random.default_rng(0)
    assert ev.calibrated_threshold(NearestMean(), t, r1) == ev.calibrated_threshold(NearestMean(), t2, r2)


def test_paired_difference_sign_and_se():
    tasks = [toy(6, 'E', shift=1.5), toy(7, 'F', shift=1.5)]
    class Bad:
        def adapt(self, support, support_y=None, info=None, steps=None, seed=None, device=None):
            r = np.random.default_rng(len(support.support_y) + int(support.support_x.sum() * 1000) % 97)
            return Pred(lambda q: r.random(len(q)))
    from agrinb.meta.baselines import RandomForest
    runs = ev.benchmark_runs({'mean': NearestMean(), 'bad': Bad(), 'rf': RandomForest(n_estimators=10)}, tasks,
                             n_runs=6, shots=[5], progress=False, calibrate=False)
    c = ev.paired_difference(runs, 'mean', 'bad', setting='shots', shots=5)
    per = runs[runs.setting == 'shots'].groupby(['model', 'run']).auc_roc.mean()
    d = (per['mean'] - per['bad']).to_numpy()
    assert c['diff'] == pytest.approx(d.mean()) and c['se'] == pytest.approx(d.std(ddof=1) / math.sqrt(6))
    assert c['beats'] and not ev.paired_difference(runs, 'bad', 'mean', setting='shots', shots=5)['beats']


@pytest.mark.parametrize('change, msg', [
    (dict(query_x=np.zeros((0, 4, 3), np.float32), query_y=np.zeros(0, np.int64)), 'non-empty query set'),
    (dict(query_y=np.zeros(60, np.int64)), 'both classes in the query set'),
    (dict(support_y=np.ones(80, np.int64)), 'both classes in the support set'),
])
def test_bad_tasks(change, msg):
    t = dataclasses.replace(toy(8, 'G'), **change)
    with pytest.raises(AgrinbError, match=msg) as e:
        ev.run_benchmark({'mean': NearestMean()}, [t], n_runs=2, progress=False)
    assert 'G' in str(e.value)


def test_bad_arguments():
    t = toy(9, 'H')
    with pytest.raises(AgrinbError, match='n_runs'): ev.run_benchmark({'m': NearestMean()}, [t], n_runs=0)
    with pytest.raises(AgrinbError, match='at least one learner'): ev.run_benchmark({}, [t])
    with pytest.raises(AgrinbError, match='at least one task'): ev.run_benchmark({'m': NearestMean()}, [])
    with pytest.raises(AgrinbError, match='shots'): ev.subsample_support(t, np.random.default_rng(0), shots=500)
    with pytest.raises(AgrinbError, match='size'): ev.subsample_support(t, np.random.default_rng(0), size=1)


def test_tables_have_the_papers_shape():
    tasks = [toy(10, 'Togo'), toy(11, 'Kenya')]
    from agrinb.meta.baselines import RandomForest
    s = ev.run_benchmark({'mean': NearestMean(), ev.RF_NAME: RandomForest(n_estimators=10)}, tasks, n_runs=3,
                         shots=[5], progress=False)
    t = ev.results_table(s, metrics=('auc_roc', 'f1'))
    assert list(t.columns) == ['Togo', 'Kenya']
    assert list(t.index) == [(m, x) for m in ('auc_roc', 'f1') for x in ('mean', ev.RF_NAME)]
    assert all('±' in c for c in t.to_numpy().ravel())
    rt = ev.rf_table(s)
    assert list(rt.index) == ['mean'] and list(rt.columns) == ['Togo all', 'Togo 5-shot', 'Kenya all', 'Kenya 5-shot']


def test_summarize_tile_frames_like_pandas():
    "The one summary on a tile frame: `<m>`/`<m>_se` per (learner, shot), equal to pandas' mean and sem (ddof=1, NaN skipped)."
    rng = np.random.default_rng(3)
    df = pd.DataFrame(dict(learner=np.repeat(['maml', 'random'], 12), shot=np.tile(np.repeat([1, 3, 5], 4), 2),
                           miou=rng.random(24), pixel_accuracy=rng.random(24)))
    df.loc[5, 'miou'] = np.nan  # an image with no labelled pixel
    s = ev.summarize(df, reference=None, by=('learner', 'shot'), metrics=('miou', 'pixel_accuracy'))
    g = df.groupby(['learner', 'shot'])
    for m in ('miou', 'pixel_accuracy'):
        assert np.allclose(s[m], g[m].mean().to_numpy()) and np.allclose(s[f'{m}_se'], g[m].sem().to_numpy())
    assert list(s.n_runs) == [4] * 6 and not any(c.endswith('_mean') for c in s.columns)
    with pytest.raises(AgrinbError, match="None for runs without 'auc_roc'"):
        ev.summarize(df, by=('learner', 'shot'), metrics=('miou',))

def test_segmentation_scores_go_through_the_confusion_matrix():
    rng = np.random.default_rng(1); p, t = rng.integers(0, 5, (3, 8, 8)), rng.integers(-1, 5, (3, 8, 8))
    m = ev.metrics_from_confusion(ev.confusion(torch.as_tensor(p), torch.as_tensor(t), 5))
    assert ev.segmentation_scores(p, t, 5) == (m['mIoU'], m['aAcc'])
    assert all(math.isnan(v) for v in ev.segmentation_scores(p, np.full_like(t, -1), 5))  # nothing labelled: no score


def test_task_forest_through_run_benchmark_reads_the_task_vector():
    "TaskForest runs through `run_benchmark` unchanged. Pooled maize and cassava tasks (each crop a negative of the other's"
    "tasks) lift its 2-shot AUC on new maize tasks over the support forest's when it is told 'maize', and not when told 'cassava'."
    from agrinb.meta.baselines import TaskForest, RandomForest
    from agrinb.tasks.pixels import Task, TaskInfo
    r = np.random.default_rng(0)
    def task(i, crop, told=None, n=120):
        kind = np.arange(n) % 3                                      # 0 maize, 1 cassava, 2 neither
        x = r.normal(size=(n, 4, 3)).astype(np.float32); x[:, 1, 0] += 1.5 * (kind == 0); x[:, 2, 1] += 1.5 * (kind == 1)
        y = (kind == ('maize', 'cassava').index(crop)).astype(np.int64)
        return Task(f'{crop}{i}', x[:60], y[:60], x[60:], y[60:], TaskInfo(0., 0., told or crop))
    tf = TaskForest(seed=0, n_estimators=30).meta_fit([task(i, ('maize', 'cassava')[i % 2]) for i in range(8)])
    def gain(told):
        s = ev.run_benchmark({'Task forest': tf, 'Random forest': RandomForest(seed=0, n_estimators=30)},
                             [task(100 + i, 'maize', told) for i in range(3)], n_runs=4, shots=[2], progress=False)
        return s[(s.model == 'Task forest') & (s.setting == 'shots')].auc_minus_rf.mean()
    right, wrong = gain('maize'), gain('cassava')
    assert right > 0.1 and right > wrong + 0.1, (right, wrong)
