"""Few-shot land cover on synthetic Sen12MS tiles: the 0-10-shot curve (MAML vs pretrained vs random, accuracy and
Cohen's kappa with standard errors over 4-way test tasks) and the time of 100 batched 4-way 10-shot evaluations.

    python benchmarks/bench_tiles.py --threads 1 --skip-timing    # the curve with the chosen defaults (16x16 tiles)
    python benchmarks/bench_tiles.py [--steps 1200] [--tasks 100] [--size 16] [--threads 2] [--segmentation] [--files]
    python benchmarks/bench_tiles.py --skip-curve --threads 2     # only the 2-minute timing figure

Tiles are generated (with --files: written as real Sen12MS GeoTIFFs and read back), split by region (random meta-split), and the
three learners are compared as in the seed paper (step size and steps chosen per shot on meta-validation regions).
MAML is meta-trained from the pretrained model's weights (--maml-init random: from random weights, as in the paper).
Prints numbers only; nothing is asserted."""
import argparse, time, tempfile
from pathlib import Path
import numpy as np, torch
from agrinb.core import seed_everything
from agrinb.data.tiles import (make_sen12ms_tiles, write_sen12ms, read_sen12ms, sen12ms_tileset, make_deepglobe_images,
                               write_deepglobe, read_deepglobe, random_conv_features)
from agrinb.tasks.tiles import sample_tile_task, deepglobe_task, meta_split, channel_stats
from agrinb.models.cnn import TileCNN, UNet
from agrinb.meta.tiles import TileLearner
from agrinb.eval import evaluate_shots, summarize, choose_adaptation, evaluate_segmentation

def classification(a):
    seed_everything(a.seed)
    raw = make_sen12ms_tiles(a.regions, ('spring', 'summer'), a.tiles, a.size, shift=a.shift, tile_var=a.tile_var, seed=a.seed)
    t = time.time()
    if a.files:  # the real path: GeoTIFFs on disk, read back
        with tempfile.TemporaryDirectory() as d: write_sen12ms(raw, d); ts = read_sen12ms(d, progress=False)
    else: ts = sen12ms_tileset(raw)  # the same TileSet without the file round trip
    print(f'data: {ts} ({"written and read" if a.files else "in memory"} in {time.time() - t:.1f}s)')
    split = meta_split(sorted(set(ts.region), key=int), 'random', fractions=(0.6, 0.2, 0.2), seed=a.seed)
    part = {k: ts[np.isin(ts.region, v)] for k, v in split.items()}
    print({k: len(v) for k, v in split.items()}, 'regions (train/val/test)')
    stats = channel_stats(part['train'].x)
    # meta-train tasks: 4-way, k support tiles per class (k drawn per meta-batch from a.train_shots) and a.train_queries
    # query tiles per class; the pretrained model trains on the same batches with support and query pooled (all 10
    # classes compete), as in the paper
    train = lambda r, k: sample_tile_task(part['train'], 4, k, a.train_queries, rng=r)
    rng = np.random.default_rng(a.seed + 1)
    val = [sample_tile_task(part['val'], 4, 10, 10, rng=rng) for _ in range(a.val_tasks)]
    test = [sample_tile_task(part['test'], 4, 10, 10, rng=rng) for _ in range(a.tasks)]
    learners = {}
    for kind in ('pretrained', 'maml', 'random'):  # pretrained first: MAML starts from its weights (--maml-init)
        l = TileLearner(TileCNN(15, 10), kind, lr=a.inner_lr, steps=a.inner_steps, stats=stats, seed=a.seed)
        if kind == 'maml' and a.maml_init == 'pretrained': l.init_from(learners['pretrained'])
        n = {'maml': a.steps, 'pretrained': a.pretrain_steps, 'random': 0}[kind]
        t = time.time(); l.meta_fit(train, steps=n, meta_batch=a.meta_batch, first_order=a.first_order, progress=False,
                                    shots=a.train_shots,
                                    outer_lr=a.pretrain_lr if kind == 'pretrained' else a.outer_lr, seed=a.seed)
        h = l.history; loss = f', loss first/last 50 steps {np.mean(h[:50]):.3f} / {np.mean(h[-50:]):.3f}' if h else ''
        print(f'{kind}: trained {n} steps in {time.time() - t:.0f}s{loss}'); learners[kind] = l
    learners = {k: learners[k] for k in ('maml', 'pretrained', 'random')}
    shots = list(range(0, 11)); res = []
    for kind, l in learners.items():
        t = time.time()
        grid_shots = [1, 5, 10]
        best = choose_adaptation(l, val, grid_shots, lrs=a.lrs, steps=a.grid_steps)
        hp = {k: best[min(grid_shots, key=lambda g: abs(g - k))] if k else best[0] for k in shots}
        print(f'{kind}: (lr, steps) per shot on meta-val {dict((k, best[k]) for k in grid_shots)} ({time.time() - t:.0f}s)')
        res.append(evaluate_shots(l, test, shots, hp, seed=a.seed)); l.hp = hp
    import pandas as pd
    s = summarize(pd.concat(res), reference=None, by=('learner', 'shot'), metrics=('accuracy', 'kappa'))
    print(f'\n{a.tasks} test tasks, 4-way, query 10 per class; mean (s.e.)')
    tab = s.pivot(index='shot', columns='learner', values=['accuracy', 'accuracy_se', 'kappa', 'kappa_se'])
    for k in shots:
        print(f'{k:>2} shots  ' + '  '.join(f"{n}: acc {tab.loc[k, ('accuracy', n)]:.3f} ({tab.loc[k, ('accuracy_se', n)]:.3f}) "
                                          f"kappa {tab.loc[k, ('kappa', n)]:.3f} ({tab.loc[k, ('kappa_se', n)]:.3f})"
                                          for n in ('maml', 'pretrained', 'random')))
    # MAML minus pretrained on the same test tasks and support tiles (paired by task), with the paired s.e.
    allr = pd.concat(res); w = allr.pivot_table(index=['shot', 'task'], columns='learner', values='accuracy')
    d = (w['maml'] - w['pretrained']).groupby(level='shot')
    print('\nMAML - pretrained accuracy, paired by task: ' + '  '.join(
        f'{k}: {v.mean():+.3f} ({v.sem():.3f}){" *" if abs(v.mean()) > 2 * v.sem() else ""}' for k, v in d))
    m, p = learners['maml'], learners['pretrained']
    t = time.time(); b = m.batch(test); m.predict(b, m.adapt_many(b, *m.hp[10])); dt = time.time() - t
    print(f'\ntiming: {a.tasks} tasks 4-way 10-shot, MAML adapt ({m.hp[10][1]} steps) + predict, batched, '
          f'{a.size}x{a.size} tiles, {torch.get_num_threads()} threads: {dt:.1f}s')
    return learners, part, test

def timing32(a):
    "The 2-minute target: 100 tasks, 4-way 10-shot, the paper's CNN on 32x32 tiles (untrained weights: cost only)."
    raw = make_sen12ms_tiles(4, ('summer',), 200, 32, shift=a.shift, tile_var=a.tile_var, seed=a.seed)
    ts = sen12ms_tileset(raw)
    rng = np.random.default_rng(0); tasks = [sample_tile_task(ts, 4, 10, 10, rng=rng) for _ in range(a.tasks)]
    l = TileLearner(TileCNN(15, 10), 'maml', lr=0.4, steps=1, stats=channel_stats(ts.x))
    for steps in (1, 5):
        t = time.time(); b = l.batch(tasks); l.predict(b, l.adapt_many(b, 0.4, steps)); dt = time.time() - t
        print(f'FIGURE timing: {a.tasks} tasks 4-way 10-shot (40 support + 40 query tiles each), paper CNN '
              f'(7 x conv64, 231 818 weights), 32x32 tiles, {steps} SGD step(s), {torch.get_num_threads()} threads: '
              f'{dt:.1f}s ({"within" if dt <= 120 else "over"} the 2-minute target)')

def segmentation(a):
    seed_everything(a.seed)
    with tempfile.TemporaryDirectory() as d:
        imgs = read_deepglobe(write_deepglobe(make_deepglobe_images(a.images, 128, 6, seed=a.seed), d), progress=False)
    feats = random_conv_features(imgs.x)
    for method in ('random', 'clustered'):
        sp = meta_split(imgs.region, method, feats, n_clusters=6, seed=a.seed)
        part = {k: imgs[np.isin(imgs.region, v)] for k, v in sp.items()}; stats = channel_stats(part['train'].x)
        tr = part['train']
        sample = lambda r: (lambda i: deepglobe_task(tr.x[i], tr.mask[i], 4, 4, rng=r))(r.integers(len(tr)))
        rows = []
        for kind in ('maml', 'pretrained', 'random'):
            l = TileLearner(UNet(3, 7, base=8), kind, lr=0.1, steps=1, stats=stats, seed=a.seed)
            l.meta_fit(sample, steps=a.seg_steps, meta_batch=4, progress=False)
            rows.append(evaluate_segmentation(l, part['test'], shots=range(1, 6), hp={k: (0.1, 5 if kind == 'random' else 1) for k in range(1, 6)}))
        import pandas as pd
        s = summarize(pd.concat(rows), reference=None, by=('learner', 'shot'), metrics=('miou', 'pixel_accuracy'))
        print(f'\nsegmentation, {method} split ({[len(v) for v in sp.values()]} images train/val/test):')
        print(s.to_string(index=False, float_format=lambda v: f'{v:.3f}'))

if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    # the curve's defaults (16x16 tiles, 48 regions, about 17 min at 1 thread): the pretrained model trained on 4-way
    # tasks with 1, 2 or 3 shots per meta-batch (4 queries per class, support and query pooled) for 600 steps (Adam
    # 1e-3); MAML, second order with one inner step of 0.2, meta-trained from the pretrained weights on the same kind
    # of batches for 1200 outer steps (Adam 3e-3)
    ap.add_argument('--steps', type=int, default=1200, help='MAML outer steps')
    ap.add_argument('--pretrain-steps', type=int, default=600, help='pretrained model steps')
    ap.add_argument('--outer-lr', type=float, default=3e-3, help="MAML's outer (Adam) step size")
    ap.add_argument('--pretrain-lr', type=float, default=1e-3, help="the pretrained model's Adam step size")
    ap.add_argument('--inner-lr', type=float, default=0.2); ap.add_argument('--inner-steps', type=int, default=1)
    ap.add_argument('--maml-init', choices=('pretrained', 'random'), default='pretrained',
                    help="MAML's starting weights: the pretrained model's (after its --pretrain-steps) or random")
    ap.add_argument('--first-order', action='store_true', help='first-order MAML (default: second order, as in the paper)')
    ap.add_argument('--train-shots', type=int, nargs='+', default=[1, 2, 3],
                    help='shots per class in meta-training (one number drawn per meta-batch)')
    ap.add_argument('--train-queries', type=int, default=4)
    ap.add_argument('--tasks', type=int, default=100)
    ap.add_argument('--val-tasks', type=int, default=20); ap.add_argument('--size', type=int, default=16)
    ap.add_argument('--regions', type=int, default=48); ap.add_argument('--tiles', type=int, default=120)
    ap.add_argument('--shift', type=float, default=1.0); ap.add_argument('--tile-var', type=float, default=1.0)
    ap.add_argument('--meta-batch', type=int, default=8); ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--threads', type=int, default=2); ap.add_argument('--lrs', type=float, nargs='+', default=[0.01, 0.1, 0.2, 0.4])
    ap.add_argument('--grid-steps', type=int, nargs='+', default=[1, 5])
    ap.add_argument('--segmentation', action='store_true'); ap.add_argument('--images', type=int, default=60)
    ap.add_argument('--seg-steps', type=int, default=100); ap.add_argument('--files', action='store_true'); ap.add_argument('--skip-curve', action='store_true'); ap.add_argument('--skip-timing', action='store_true')
    a = ap.parse_args(); torch.set_num_threads(a.threads)
    t0 = time.time()
    if not a.skip_curve: classification(a)
    if not a.skip_timing: timing32(a)
    if a.segmentation: segmentation(a)
    print(f'total {time.time() - t0:.0f}s')
