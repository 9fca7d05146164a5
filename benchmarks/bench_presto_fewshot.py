#!/usr/bin/env python
"""Spatial few-shot tasks on the real algae-bloom samples and on the embedded synthetic data: PrestoTIML, PrestoProbe,
PrestoEnsemble (probe + forest, PrestoTIML + forest), TaskForest (one forest on the training tasks' rows with their task
vectors plus the up-weighted support set) and PrestoTaskForest (the same with each row's Presto embedding) against a random forest on the raw support series, with the PAIRED
AUC-minus-forest (same support and query sets) and its standard error; then the speed figures of issue 13.
`python benchmarks/bench_presto_fewshot.py [--threads 1] [--reps 10] [--syn-reps 3] [--meta-steps 300] [--skip-synthetic]
[--skip-speed] [--no-old]`. Rows 'old PrestoProbe' / 'old PrestoTIML' are the previous defaults on the same draws (the
probe on unstandardised embeddings only; the head on the embeddings alone, `raw=False`, meta-trained on the same tasks),
for before / after side by side; 'PrestoTIML head' is the default head with the fallback to the probe switched off.
A script, not a test.

Algae tasks: regions are KMeans(8) clusters of lat/lon; a binary task asks "severity >= t" (targets run 1..5) in one
region. Leave-one-region-out: PrestoTIML is meta-trained on every task of the other regions (t = 2, 3, 4) and tested on
the held-out region's tasks. Test tasks are those with >= 25 samples of each class whose 20-shot forest AUC in a pilot
(support draws with other seeds than the evaluation's) is >= 0.6: the learnable ones. That choice favours the forest.
Synthetic tasks: crop / non-crop per region of `make_dataset`, regions split into 4 folds (meta-train on 3, test on 1).
Every support draw is k positives + k negatives; the query set is the rest of the task's samples."""
import argparse, os, sys, time
from pathlib import Path
import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from agrinb.data.synthetic import make_dataset
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agrinb.eval import standard_error
from agrinb.meta.baselines import RandomForest, TaskForest
from agrinb.tasks.pixels import Task
from agrinb.meta.presto import PrestoProbe, PrestoTIML, PrestoEnsemble, PrestoFineTune, PrestoTaskForest, EmbeddedTask, FiLMHead
from agrinb.models.presto import pretrained
from agrinb.tasks.pixels import TaskInfo, draw_by_id
from realtasks import shared_data, algae_arrays, algae_tasks, synthetic_tasks, support_draw

p = argparse.ArgumentParser()
p.add_argument('--threads', type=int, default=1); p.add_argument('--reps', type=int, default=10)
p.add_argument('--syn-reps', type=int, default=3); p.add_argument('--syn-n', type=int, default=6000)
p.add_argument('--meta-steps', type=int, default=300); p.add_argument('--shots', default='5,10,20')
p.add_argument('--shared', default=str(Path(__file__).resolve().parent.parent / '..' / '..' / 'shared' / 'data'))
p.add_argument('--no-old', action='store_true', help='skip the rows of the previous defaults')
p.add_argument('--ft-reps', type=int, default=3, help='support draws per task and k for PrestoFineTune (0: skip it)')
p.add_argument('--skip-speed', action='store_true'); p.add_argument('--skip-synthetic', action='store_true'); p.add_argument('--skip-algae', action='store_true')
a = p.parse_args()
torch.set_num_threads(a.threads)
shared = shared_data(a.shared)
SHOTS = [int(s) for s in a.shots.split(',')]
encoder = pretrained('cpu')


def evaluate(test, learners, reps, seed0=0):
    "AUC of every learner on every (task, k, draw); test: list of (EmbeddedTask, raw series)."
    rows = []
    for t, x in test:
        for k in SHOTS:
            if min(t.y.sum(), len(t.y) - t.y.sum()) < k + 5: continue
            for r in range(reps):
                s, q = support_draw(t.y, k, seed0 + 1000 * k + r); seed = seed0 + 1000 * k + r
                for name, fn in learners.items():
                    if name == 'PrestoFineTune' and r >= a.ft_reps: continue   # the slow one: fewer draws (still paired)
                    rows.append(dict(task=t.name, k=k, rep=r, learner=name,
                                     auc=roc_auc_score(t.y[q], fn(t, x, s, q, seed))))
    return rows


class NoFallback:
    "The meta-trained PrestoTIML with the fallback to the probe switched off (the head always answers)."
    def __init__(self, tl): self.tl = tl
    def adapt(self, *a, **k):
        self.tl.hparams['fallback'] = False
        try: return self.tl.adapt(*a, **k)
        finally: self.tl.hparams['fallback'] = True


def located(t, latlon, month):
    "The task with each series' lat, lon and months (PrestoFineTune re-embeds the series; Dynamic World is not passed)."
    t.lat, t.lon, t.month = latlon[:, 0], latlon[:, 1], month
    return t


def task_forests(train)->tuple:
    "A TaskForest meta-fitted on the raw series of the training tasks (EmbeddedTasks with x), and a PrestoTaskForest on them."
    return (TaskForest().meta_fit([Task(t.name, t.x, t.y, t.x[:0], [], t.info) for t in train]),
            PrestoTaskForest(device='cpu').meta_fit(train))


def make_learners(tl, old, tf=None):
    "Every learner at its defaults, given the raw support series and their cached embeddings (z=); `old` (a PrestoTIML "
    "meta-trained with raw=False, or None) adds the previous defaults (the probe on embeddings only, unstandardised; that head)."
    probe, rf, nofb, ft = PrestoProbe(device='cpu'), RandomForest(), NoFallback(tl), PrestoFineTune(device='cpu')
    ens_p, ens_t = PrestoEnsemble(probe, device='cpu'), PrestoEnsemble(tl, device='cpu')
    out = {'Random forest': lambda t, x, s, q, sd: rf.adapt(x[s], t.y[s], seed=sd).predict_proba(x[q]),
           'PrestoProbe': lambda t, x, s, q, sd: probe.adapt(x[s], t.y[s], seed=sd, z=t.z[s]).predict_proba(x[q], z=t.z[q]),
           'PrestoTIML': lambda t, x, s, q, sd: tl.adapt(x[s], t.y[s], t.info, seed=sd, z=t.z[s]).predict_proba(x[q], z=t.z[q]),
           'PrestoEnsemble(probe)': lambda t, x, s, q, sd: ens_p.adapt(x[s], t.y[s], seed=sd, z=t.z[s]).predict_proba(x[q], z=t.z[q]),
           'PrestoEnsemble(TIML)': lambda t, x, s, q, sd: ens_t.adapt(x[s], t.y[s], t.info, seed=sd, z=t.z[s]).predict_proba(x[q], z=t.z[q]),
           'PrestoFineTune': lambda t, x, s, q, sd: ft.adapt(x[s], t.y[s], lat=t.lat[s], lon=t.lon[s], month=t.month[s], seed=sd).predict_proba(
               x[q], lat=t.lat[q], lon=t.lon[q], month=t.month[q])}
    if tf is not None:
        out['Task forest'] = lambda t, x, s, q, sd: tf[0].adapt(x[s], t.y[s], t.info, seed=sd).predict_proba(x[q])
        out['Presto task forest'] = lambda t, x, s, q, sd: tf[1].adapt(x[s], t.y[s], t.info, seed=sd, z=t.z[s]).predict_proba(x[q], z=t.z[q])
    out['PrestoTIML head'] = lambda t, x, s, q, sd: nofb.adapt(x[s], t.y[s], t.info, seed=sd, z=t.z[s]).predict_proba(x[q], z=t.z[q])
    if old is not None:
        old_probe = PrestoProbe(device='cpu', standardize=False, raw=False)
        out.update({'old PrestoProbe': lambda t, x, s, q, sd: old_probe.adapt(t.z[s], t.y[s], seed=sd).predict_proba(t.z[q]),
                    'old PrestoTIML': lambda t, x, s, q, sd: old.adapt(t.z[s], t.y[s], t.info, seed=sd).predict_proba(t.z[q])})
    return out


def report(title, rows):
    import pandas as pd
    df = pd.DataFrame(rows)
    key = ['task', 'k', 'rep']
    rf = df[df.learner == 'Random forest'].set_index(key).auc
    print(f'\n{title}: {df.task.nunique()} test tasks, {len(rf)} support draws in all (paired: same support and query sets)')
    print(f'{"learner":>22} | ' + ' | '.join(f'k={k:<2} AUC    minus forest (s.e.)  ' for k in SHOTS))
    for name in df.learner.unique():
        cells = []
        for k in SHOTS:
            d = df[(df.learner == name) & (df.k == k)].set_index(key).auc
            diff = (d - rf.reindex(d.index)).to_numpy()
            m, se = diff.mean(), standard_error(diff)
            verdict = '' if name == 'Random forest' else ('>' if m > 2 * se else '<' if m < -2 * se else '~')
            cells.append(f'{d.mean():.3f}  {m:+.3f} ({se:.3f}) {verdict:<3}' if name != 'Random forest' else f'{d.mean():.3f}  {"":>18}')
        print(f'{name:>22} | ' + ' | '.join(cells))
    print('  > : beats the forest by more than 2 s.e.; < : loses by more than 2 s.e.; ~ : within 2 s.e. (does NOT beat it)')


t_all = time.perf_counter()
# ---------------------------------------------------------------------------------------------------------- algae
arr = algae_arrays(shared)
if arr is not None and not a.skip_algae:
    X, ll, mo, dwa, sev = arr['x'], arr['latlon'], arr['month'], arr['dynamic_world'], arr['target']
    t0 = time.perf_counter()
    Z = encoder.embed(X, ll[:, 0], ll[:, 1], month=mo, dynamic_world=dwa, progress=False)
    print(f'algae: {len(X)} samples embedded once in {time.perf_counter() - t0:.1f} s; severity counts 1..5: {np.bincount(sev)[1:].tolist()}')
    tasks = {key: (located(EmbeddedTask(t['name'], Z[t['idx']], t['y'], t['info'], X[t['idx']]), ll[t['idx']], mo[t['idx']]), X[t['idx']])
             for key, t in algae_tasks(arr).items()}
    pilot, test_keys = {}, []
    for key, (t, x) in tasks.items():
        if min(t.y.sum(), len(t.y) - t.y.sum()) < 25: continue
        aucs = []
        for r in range(5):
            s, q = support_draw(t.y, 20, 10_000 + r)
            aucs.append(roc_auc_score(t.y[q], RandomForest().adapt(x[s], t.y[s], seed=10_000 + r).predict_proba(x[q])))
        pilot[t.name] = float(np.mean(aucs))
        if pilot[t.name] >= 0.6: test_keys.append(key)
    print('pilot 20-shot forest AUC (tasks with >= 25 per class): ' + ', '.join(f'{k} {v:.3f}' for k, v in pilot.items()))
    print(f'test tasks (pilot >= 0.6): {[tasks[k][0].name for k in test_keys]}; meta-training tasks per held-out region: '
          f'all {len(tasks)} tasks of the other regions')
    rows = []
    for r in sorted({k[0] for k in test_keys}):
        train = [t for (rr, _), (t, _) in tasks.items() if rr != r]
        t0 = time.perf_counter()
        tl = PrestoTIML(device='cpu').meta_fit(train, steps=a.meta_steps, progress=False)
        print(f'  held-out region {r}: PrestoTIML meta-trained on {len(train)} tasks in {time.perf_counter() - t0:.1f} s, '
              f'best val step {max(tl.history, key=lambda h: -h.get("val_loss", np.inf))["step"]}, '
              f'step sizes {", ".join(f"{k} {v:.3f}" for k, v in tl.step_sizes.items())}')
        old = None if a.no_old else PrestoTIML(device='cpu', raw=False).meta_fit(train, steps=a.meta_steps, progress=False)
        rows += evaluate([tasks[k] for k in test_keys if k[0] == r], make_learners(tl, old, task_forests(train)), a.reps)
    report('ALGAE BLOOMS (real), leave-one-region-out', rows)

# ------------------------------------------------------------------------------------------------------ synthetic
if not a.skip_synthetic:
    ds = make_dataset(a.syn_n, seed=1)
    t0 = time.perf_counter(); Z = encoder.embed_dataset(ds, progress=False)
    print(f'\nsynthetic: {len(ds.x)} series embedded once in {time.perf_counter() - t0:.1f} s')
    regions = np.array(sorted(set(ds.regions))); fold = np.random.default_rng(0).permutation(len(regions)) % 4
    tasks = {r: (located(EmbeddedTask(t['name'], Z[t['idx']], t['y'], t['info'], ds.x[t['idx']]), np.c_[ds.lat, ds.lon][t['idx']], np.zeros((len(t['idx']), ds.x.shape[1]), int)),
                 ds.x[t['idx']]) for r, t in synthetic_tasks(ds).items()}
    rows = []
    for f in range(4):
        held = set(regions[fold == f])
        train = [t for r, (t, _) in tasks.items() if r not in held]
        test = [v for r, v in tasks.items() if r in held and min(v[0].y.sum(), len(v[0].y) - v[0].y.sum()) >= 25]
        t0 = time.perf_counter()
        tl = PrestoTIML(device='cpu').meta_fit(train, steps=a.meta_steps, progress=False)
        print(f'  fold {f}: meta-trained on {len(train)} regions in {time.perf_counter() - t0:.1f} s; testing on {len(test)} regions')
        old = None if a.no_old else PrestoTIML(device='cpu', raw=False).meta_fit(train, steps=a.meta_steps, progress=False)
        rows += evaluate(test, make_learners(tl, old, task_forests(train)), a.syn_reps)
    report('SYNTHETIC (embedded make_dataset), held-out region folds', rows)

# ---------------------------------------------------------------------------------------------------------- speed
if a.skip_speed: print(f'total {time.perf_counter() - t_all:.0f} s'); sys.exit(0)
print(f'\nspeed ({a.threads} thread(s); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: other work slows small ops most)')
r = np.random.default_rng(0)
fake = [EmbeddedTask(f't{i}', r.normal(size=(80, 128)).astype(np.float32), np.r_[np.ones(40), np.zeros(40)].astype(int),
                     TaskInfo(float(r.uniform(-40, 40)), float(r.uniform(-100, 100)))) for i in range(32)]
tl = PrestoTIML(device='cpu'); tr = tl._prepare(fake, 'speed')
opt = torch.optim.Adam(list(tl.head.parameters()) + list(tl.encoder.parameters()), 1e-3)
for so in (True, False):
    ts, te = [], []
    for s in range(40):
        t0 = time.perf_counter(); pick, eps = tl._episode(tr, 32, (5, 20), 10, r); t1 = time.perf_counter()
        opt.zero_grad(); tl._losses(pick, eps, tl.fit_config['inner_steps'], not so).mean().backward(); opt.step()
        ts.append(time.perf_counter() - t0); te.append(t1 - t0)
    print(f'  PrestoTIML outer step, 32 cached tasks, {tl.fit_config["inner_steps"]} inner steps, '
          f'{"second" if so else "first"} order: median {1e3 * np.median(ts[5:]):.1f} ms (of which episode drawing {1e3 * np.median(te[5:]):.1f} ms)')
cache = r.normal(size=(65536, 128)).astype(np.float32); ys = np.r_[np.ones(32), np.zeros(32)].astype(int)
probe, ts = PrestoProbe(device='cpu'), []
for _ in range(5):
    t0 = time.perf_counter(); pr = probe.adapt(cache[:64], ys, seed=0).predict_proba(cache); ts.append(time.perf_counter() - t0)
print(f'  PrestoProbe.adapt (64 support) + predict_proba on 65,536 cached embeddings: median {np.median(ts):.3f} s')
ts = []
for _ in range(5):
    t0 = time.perf_counter(); pr = tl.adapt(cache[:64], ys, TaskInfo(0., 0.), seed=0).predict_proba(cache); ts.append(time.perf_counter() - t0)
print(f'  PrestoTIML.adapt (64 support, steps chosen on the support) + predict_proba on 65,536 cached embeddings: median {np.median(ts):.3f} s')
print(f'total {time.perf_counter() - t_all:.0f} s')
