#!/usr/bin/env python
"""The learners at their defaults against a random forest on the support set alone, on spatial few-shot tasks built
from real samples (algae blooms, `realtasks.py`) and from the synthetic data: AUC minus forest at 5 / 10 / 20 shots,
PAIRED (the same support and query sets), with its standard error.

    PYTHONPATH=/work/wt/adapt python benchmarks/bench_own_data.py            # this tree's defaults ("after")
    PYTHONPATH=/work/main python benchmarks/bench_own_data.py                # main's defaults ("before")
    python benchmarks/bench_own_data.py --meta-steps 150 --reps 3 --skip-synthetic --threads 1

Algae: regions are KMeans(8) clusters of lat/lon, tasks "severity >= t" (t = 2, 3, 4) per region. The regions are
split in two at random (`--split-seed`): the learners meta-train (or pretrain) on every task of one half (their
support + query sets are the task's samples, halved) and are tested on the tasks of the other half with >= 25 of
each class. Series are standardised per band with statistics of the training regions (`BandStats`). Every learner
runs at its defaults except the number of meta-training steps (`--meta-steps`, to keep the run a few minutes);
learners with `adapt_many` adapt all support draws of one shot count in one call. A script, not a test.

Diagnostics (same support / query draws, so rows compare paired): `--fit 'inner_lr=0.1'` and `--model 'hidden=32'`
override meta_fit / constructor arguments of the learners that take them; `--adapt chosen,0,10` adds a row per
adaptation variant (`chosen` = the default `steps=None`, `0` = the meta-learned model unadapted, `N` = N steps).
Each half's table is printed as soon as it is done, then the pooled one."""
import argparse, inspect, os, statistics, sys, time
import numpy as np
import torch
from sklearn.metrics import roc_auc_score
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from realtasks import shared_data, algae_arrays, algae_tasks, synthetic_tasks, support_draw, as_task
import agrinb
from agrinb.data.pixels import BandStats
from agrinb.data.synthetic import make_dataset
from agrinb.eval import standard_error
from agrinb.meta.maml import MAML
from agrinb.meta.timl import TIML, MAMLInfo
from agrinb.meta.baselines import RandomForest, Pretrained, RandomInit, TaskForest

p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
p.add_argument('--threads', type=int, default=1); p.add_argument('--reps', type=int, default=3)
p.add_argument('--meta-steps', type=int, default=150); p.add_argument('--shots', default='5,10,20')
p.add_argument('--split-seed', type=int, default=0); p.add_argument('--shared', default=None)
p.add_argument('--learners', default='MAML,MAML+info,TIML,Pretrained,Random,Task forest')
p.add_argument('--skip-synthetic', action='store_true'); p.add_argument('--syn-n', type=int, default=3000)
p.add_argument('--fit', default='', help="meta_fit overrides of the learners whose meta_fit takes them, e.g. 'inner_lr=0.1,first_order=True'")
p.add_argument('--model', default='', help="constructor overrides, e.g. 'hidden=64,dropout=0.3'")
p.add_argument('--adapt', default='chosen', help="adaptation variants, each a row: 'chosen' (the default, steps=None) or a step count, 0 = no adaptation")
a = p.parse_args()
torch.set_num_threads(a.threads)
SHOTS = [int(s) for s in a.shots.split(',')]
def kv(text:str)->dict:
    "'a=1,b=True' -> {'a': 1, 'b': True}"
    import ast
    return {k.strip(): ast.literal_eval(v) for k, v in (i.split('=', 1) for i in text.split(',') if i.strip())}
FIT, MODEL, ADAPT = kv(a.fit), kv(a.model), a.adapt.split(',')
MAKE = {'MAML': MAML, 'MAML+info': MAMLInfo, 'TIML': TIML, 'Pretrained': Pretrained, 'Random': RandomInit, 'Task forest': TaskForest}


def train_task(t, x):
    "A meta-training Task: the task's samples halved (class-stratified) into support and query."
    half = np.zeros(len(t['y']), bool)
    for c in (0, 1): idx = np.flatnonzero(t['y'] == c); half[idx[::2]] = True
    return as_task(t, x, np.flatnonzero(half), np.flatnonzero(~half))


def run(X, train, test):
    "Meta-train every learner on `train`, evaluate on the support draws of `test` (paired with the forest)."
    stats = BandStats.empty(X.shape[-1]).update(np.concatenate([X[t['idx']] for t in train]))
    Xs = stats.scale(X).astype(np.float32)
    tr = [train_task(t, Xs[t['idx']]) for t in train]
    draws = [(t, k, r, *support_draw(t['y'], k, 1000 * k + r)) for t in test for k in SHOTS for r in range(a.reps)
             if min(t['y'].sum(), len(t['y']) - t['y'].sum()) >= k + 5]
    rows = [dict(task=t['name'], k=k, rep=r, learner='Random forest',
                 auc=roc_auc_score(t['y'][q], RandomForest().adapt(Xs[t['idx']][s], t['y'][s], seed=1000 * k + r).predict_proba(Xs[t['idx']][q])))
            for t, k, r, s, q in draws]
    for name in a.learners.split(','):
        t0 = time.perf_counter()
        make = MAKE[name]; sig = lambda f: inspect.signature(f).parameters
        lrn = make(device='cpu', **{k: v for k, v in MODEL.items() if k in sig(make.__init__)})
        lrn.meta_fit(tr, steps=a.meta_steps, progress=False, **{k: v for k, v in FIT.items() if k in sig(lrn.meta_fit)})
        t1 = time.perf_counter()
        for k in SHOTS:
            dk = [d for d in draws if d[1] == k]
            tasks = [as_task(t, Xs[t['idx']], s, q) for t, _, _, s, q in dk]
            for v in ADAPT:
                label = name if v == 'chosen' else f'{name}@{v}'
                if v == '0': preds = [lrn.predictor(tk.info) if hasattr(lrn, 'predictor') else None for tk in tasks]
                elif hasattr(lrn, 'adapt_many'): preds = lrn.adapt_many(tasks, seed=k, **({} if v == 'chosen' else dict(steps=int(v))))
                else: preds = [lrn.adapt(tk, seed=k) for tk in tasks]
                if preds[0] is None: continue
                rows += [dict(task=t['name'], k=k, rep=r, learner=label, auc=roc_auc_score(tk.query_y, pr.predict_proba(tk.query_x)),
                              steps=getattr(pr, 'steps', (0 if v == '0' else 250) if hasattr(lrn, 'fit_config') else np.nan)) for (t, _, r, _, _), tk, pr in zip(dk, tasks, preds)]
        ss = lrn.step_sizes() if callable(getattr(lrn, 'step_sizes', None)) else getattr(lrn, 'fit_config', {}).get('inner_lr')
        ss = f'{np.median(ss):.3g} (median of {len(ss)})' if isinstance(ss, list) else f'{ss}'
        print(f'  {name}: meta_fit {t1 - t0:.0f} s, adapt {time.perf_counter() - t1:.0f} s; best val step {getattr(lrn, "best_val", None) and max(lrn.history, key=lambda h: -h.get("val_loss", np.inf))["step"]}; inner step size {ss}', flush=True)
    return rows


def report(title, rows, n_train):
    import pandas as pd
    df = pd.DataFrame(rows); key = ['task', 'k', 'rep']
    rf = df[df.learner == 'Random forest'].set_index(key).auc
    print(f'\n{title}: agrinb from {os.path.dirname(agrinb.__file__)}; fit {FIT or "defaults"}, model {MODEL or "defaults"}; {n_train:g} training tasks, {df.task.nunique()} test tasks, '
          f'{a.reps} support draws per task and shot count, {a.meta_steps} meta-training steps (paired: same support and query sets)')
    print(f'{"learner":>14} | ' + ' | '.join(f'k={k:<2} AUC   minus forest (s.e.)  steps' for k in SHOTS))
    for name in df.learner.unique():
        cells = []
        for k in SHOTS:
            d = df[(df.learner == name) & (df.k == k)].set_index(key)
            diff = (d.auc - rf.reindex(d.index)).to_numpy(); m, se = diff.mean(), standard_error(diff)
            st = f'{d.steps.median():5.0f}' if 'steps' in d and name != 'Random forest' and d.steps.notna().any() else '    -'
            cells.append(f'{d.auc.mean():.3f}  ' + (f'{m:+.3f} ({se:.3f})' if name != 'Random forest' else f'{"":15}') + f'    {st}')
        print(f'{name:>14} | ' + ' | '.join(cells), flush=True)


t_all = time.perf_counter()
arr = algae_arrays(shared_data(a.shared))
if arr is not None:
    tasks = algae_tasks(arr); regions = sorted({t['region'] for t in tasks.values()})
    half = np.random.default_rng(a.split_seed).permutation(regions)[: len(regions) // 2].tolist()
    rows, n_tr = [], 0
    for held in (set(half), set(regions) - set(half)):      # each half held out in turn
        train = [t for t in tasks.values() if t['region'] not in held and min(t['y'].sum(), len(t['y']) - t['y'].sum()) >= 14]
        test = [t for t in tasks.values() if t['region'] in held and min(t['y'].sum(), len(t['y']) - t['y'].sum()) >= 25]
        print(f'algae: {len(arr["x"])} samples, {len(tasks)} tasks; test regions {sorted(held)}: {[t["name"] for t in test]}; '
              f'{len(train)} training tasks (>= 14 of each class)', flush=True)
        half_rows = run(arr['x'], train, test); rows += half_rows; n_tr += len(train)
        report(f'algae, test regions {sorted(held)} only', half_rows, len(train))
    report('ALGAE BLOOMS (real), each half of the regions held out in turn', rows, n_tr / 2)
else: print('algae-bloom samples absent: skipped')
if not a.skip_synthetic:
    ds = make_dataset(a.syn_n, seed=1); tasks = synthetic_tasks(ds); regions = sorted(tasks)
    held = set(np.random.default_rng(a.split_seed).permutation(regions)[: len(regions) // 4].tolist())
    train = [t for r, t in tasks.items() if r not in held and min(t['y'].sum(), len(t['y']) - t['y'].sum()) >= 14]
    test = [t for r, t in tasks.items() if r in held and min(t['y'].sum(), len(t['y']) - t['y'].sum()) >= 25]
    report('SYNTHETIC (make_dataset), a quarter of the regions held out', run(ds.x, train, test), len(train))
print(f'total {time.perf_counter() - t_all:.0f} s')
