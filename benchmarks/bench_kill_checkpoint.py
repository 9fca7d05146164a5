"""SIGKILL at random moments: (1) a process that keeps rewriting a checkpoint (core.save_checkpoint -> atomic_path,
fsync); (2) with --learners, the `meta_fit` of every resumable learner (MAML, TIML, Pretrained, ProtoNet, PrestoTIML, and the tile
MAML `TileLearner`);
(3) with --train, `agrinb.mapping.train`, whose outputs (MultiSourceMapper-train.pt, history.json,
MultiSourceMapper.pt) are one set.

(1) After each kill the file under its final name must load (checksum checked) and be one whole iteration (every
tensor from the same step); `.tmp` files left by a killed write are counted, then removed the way `fit_loop` does
on its next start (`agrinb.meta.core._remove_orphans`), and counted again.

(2) Each kill (of a forked process) lands at a random moment of a learner's run (each step slowed by a sleep,
which changes no number);
the run is then resumed from its checkpoint and its final weights compared, bit for bit, with an uninterrupted
run's; `.tmp` files are counted after the resume. `tests/test_kill_resume.py` runs one kill per learner.

(3) Each kill lands on a random file operation of a 3-epoch run of a tiny mapper (just before or just after its
k-th `os.replace`, k drawn over all the renames an uninterrupted run makes: every write window is hit, not only
the long compute between them). The folder is then checked as the next start first sees it ("mixed" right after
the kill), after `commit_outputs` (what `train` does first: "mixed after the next start"), and after a resumed run
to the end (bit-identical final weights, a consistent set, no hidden file left). A set is consistent when
history.json is the history inside the train checkpoint, the best model is the epoch of the best validation score
in it, and no staged or temporary file remains.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_kill_checkpoint.py --kills 20
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_kill_checkpoint.py --learners --kills 20
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_kill_checkpoint.py --train --kills 20
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_kill_checkpoint.py --sets --kills 20

(4) With --sets, each kill lands on a random rename of the map session's `export` (labels GeoJSON, probability
GeoTIFF, HTML map: one set, `agrinb.core.write_set`) of new labels over an earlier export of other labels. The
folder is checked right after the kill and after `commit_set` (what the next export does first): a set is
consistent when the GeoJSON, the HTML map and the GeoTIFF all come from the same export (the same number of labels,
the probabilities of that export's model) and no hidden file remains.
"""
import argparse, os, random, signal, subprocess, sys, tempfile, time
from pathlib import Path

CHILD = r'''
import sys, torch
from agrinb.core import save_checkpoint
p, n = sys.argv[1], int(sys.argv[2])
i = 0
print('ready', flush=True)
while True:
    i += 1
    save_checkpoint(p, 'Bench', {'a': torch.full((n,), float(i)), 'b': torch.full((n // 2,), float(i)), 'step': torch.tensor(i)}, step=i)
'''

LEARNERS = ('MAML', 'TIML', 'Pretrained', 'ProtoNet', 'PrestoTIML', 'TileMAML')
CHECKPOINT = {'TileMAML': 'TileLearner-maml'}   # the checkpoint's name where it is not the learner's
STEPS = 8

def run_learner(name:str, # one of LEARNERS
                d, # checkpoint folder (None: no checkpoint)
                resume:bool=False, steps:int=STEPS)->dict:
    "Meta-train a tiny `name` on toy tasks (validation every 2 steps, a checkpoint every step); its weights."
    import torch
    from agrinb.tasks.pixels import toy_tasks
    from agrinb.meta.maml import MAML
    from agrinb.meta.timl import TIML
    from agrinb.meta.baselines import Pretrained, ProtoNet
    torch.set_num_threads(1)
    tasks = toy_tasks(8, n=24, T=6, B=4, seed=3); tr, va = tasks[:6], tasks[6:]
    kw = dict(checkpoint_dir=d, resume=resume, progress=False)
    if name in ('MAML', 'TIML'):
        cls = MAML if name == 'MAML' else TIML
        lrn = cls(in_features=4, hidden=8, dropout=0.3, **({'encoder_width': 8} if name == 'TIML' else {}))
        lrn.meta_fit(tr, va, steps=steps, meta_batch=2, k_support=2, k_query=2, val_every=2, checkpoint_every=1, seed=1, **kw)
        return {f'{m}.{k}': v for m, sd in lrn.state().items() for k, v in sd.items()}
    if name == 'TileMAML':   # a tile classifier (CNN) on synthetic Sen12MS-like tiles
        import numpy as np
        from agrinb.data.tiles import make_sen12ms_tiles, igbp_to_dfc, TileSet, DFC_CLASSES, SEN12MS_BANDS
        from agrinb.tasks.tiles import sample_tile_task, channel_stats
        from agrinb.meta.tiles import TileLearner
        from agrinb.models.cnn import TileCNN
        raw = make_sen12ms_tiles(n_regions=6, n_tiles=40, size=16, seed=0)
        x = np.concatenate([raw['s2'] / 1e4, (np.clip(raw['s1'], -25, 0) + 25) / 25], 1)
        ts = TileSet(x, igbp_to_dfc(raw['lc'][:, 0]), raw['region'], raw['season'], DFC_CLASSES, SEN12MS_BANDS)
        lrn = TileLearner(TileCNN(15, 10, hidden=8, n_blocks=2), 'maml', lr=0.4, stats=channel_stats(ts.x), device='cpu', seed=0)
        lrn.meta_fit(lambda r: sample_tile_task(ts, 3, 1, 2, rng=r), steps=steps, meta_batch=2, checkpoint_every=1, seed=1, **kw)
        return {k: v.clone() for k, v in lrn.theta.items()}
    if name == 'PrestoTIML':   # on cached embeddings (drawn here: the fit loop never runs the encoder) and raw series
        import numpy as np
        from agrinb.meta.presto import PrestoTIML, EmbeddedTask
        g = np.random.default_rng(5)
        emb = [EmbeddedTask(t.name, g.normal(size=(len(t.y), 128)).astype(np.float32), np.asarray(t.y), t.info, np.asarray(t.x))
               for t in tasks]
        lrn = PrestoTIML(hidden=8, encoder_width=8, bands=['B2', 'B3', 'B4', 'B8'], device='cpu')
        lrn.meta_fit(emb[:6], emb[6:], steps=steps, meta_batch=2, k_support=2, k_query=2, val_every=2, checkpoint_every=1, seed=1, **kw)
        return {f'{m}.{k}': v for m, sd in lrn.state().items() for k, v in sd.items()}
    if name == 'Pretrained':
        lrn = Pretrained(in_features=4, hidden=8, dropout=0.3)
        lrn.meta_fit(tr, va, steps=steps, batch_size=16, eval_every=1, seed=1, **kw)
        return {f'{m}.{k}': v for m, sd in lrn.state().items() for k, v in sd.items()}
    lrn = ProtoNet(in_features=4, hidden=8, dropout=0.3, seed=1)
    lrn.meta_fit(tr, va, steps=steps, meta_batch=2, k=2, q=2, eval_every=1, **kw)
    return {k: v.detach().clone() for k, v in lrn.model.state_dict().items()}

def _learner_child(name:str, d:str, sleep:float):
    "The killed process (forked: nothing to import again): `name`'s run with every step slowed by `sleep` s."
    import agrinb.meta.core as core, agrinb.meta.maml as maml, agrinb.meta.baselines as baselines, agrinb.meta.presto as presto
    import agrinb.meta.tiles as tiles
    fit = core.fit_loop
    def slow_fit(step, *a, **kw):   # the kill lands mid-run; no number changes
        def slow(s, rng): time.sleep(sleep); return step(s, rng)
        return fit(slow, *a, **kw)
    maml.fit_loop = baselines.fit_loop = presto.fit_loop = tiles.fit_loop = slow_fit
    run_learner(name, d)

def kill_learner(name:str, d:Path, delay:float, sleep:float=0.05)->int:
    "Fork a process running `name`'s meta_fit, SIGKILL it `delay` s after its first checkpoint; the step on disk."
    import multiprocessing as mp
    from agrinb.core import load_checkpoint
    proc = mp.get_context('fork').Process(target=_learner_child, args=(name, str(d), sleep)); proc.start()
    ck, t0 = Path(d) / f'{CHECKPOINT.get(name, name)}.pt', time.time()
    while not ck.exists() and proc.is_alive() and time.time() - t0 < 120: time.sleep(0.005)
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL); proc.join()
    if proc.exitcode != -signal.SIGKILL: raise RuntimeError(f'{name}: the run ended (exit code {proc.exitcode}) before the kill')
    return load_checkpoint(ck)['meta']['step'] if ck.exists() else 0

def same(a:dict, b:dict)->bool:
    import torch
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

def bench_learners(kills:int, seed:int):
    rng = random.Random(seed); full = {n: run_learner(n, None) for n in LEARNERS}
    rows = {n: dict(kills=0, identical=0, orphans_after_resume=0, steps=[]) for n in LEARNERS}
    for k in range(kills):
        name = LEARNERS[k % len(LEARNERS)]; d = Path(tempfile.mkdtemp())
        step = kill_learner(name, d, rng.uniform(0, 0.3))
        res = run_learner(name, d, resume=True)
        r = rows[name]; r['kills'] += 1; r['identical'] += same(full[name], res); r['steps'].append(step)
        r['orphans_after_resume'] += len(list(d.glob('.*.tmp')))
    for n, r in rows.items(): print(f"{n:>10}: kills {r['kills']}, bit-identical resumes {r['identical']}, "
                                    f"orphan .tmp after resume {r['orphans_after_resume']}; step on disk at each kill {r['steps']}")

# ---- (3) agrinb.mapping.train: three files, one set --------------------------------------------------------------
TRAIN_OV = {'model.depths': [1, 1], 'model.embed_dim': 8, 'train.warmup_steps': 2, 'train.batch_size': 4, 'train.epochs': 3}

def train_samples(root:Path)->dict:
    "Tiny demo samples under `root` and the overrides that train on them."
    from agrinb.data.h5maps import toy_cube, demo_samples
    if not (root / 'samples').exists(): demo_samples(root / 'samples', size=64, tile=32, stride=16, cube=toy_cube((64, 64), n_bands=18, seed=0))
    return {**TRAIN_OV, 'data.root': str(root / 'samples')}

def run_train(ov:dict, work:Path, resume:bool=True)->dict:
    import torch
    from agrinb.mapping import train
    torch.set_num_threads(1)
    return train('tiny', work, device='cpu', progress=False, overrides=ov, resume=resume)

def die_at_rename(k:int, after:bool):
    "From now on this process SIGKILLs itself just before (or after) its k-th `os.replace`."
    real, n = os.replace, [0]
    def replace(a, b):
        n[0] += 1
        if n[0] == k and not after: os.kill(os.getpid(), signal.SIGKILL)
        real(a, b)
        if n[0] == k and after: os.kill(os.getpid(), signal.SIGKILL)
    os.replace = replace

def _train_child(ov:dict, work:str, k:int, after:bool):
    "The killed process (forked): the run, SIGKILLed just before (or after) its k-th rename."
    die_at_rename(k, after); run_train(ov, Path(work))

def count_renames(ov:dict)->int:
    "How many `os.replace` calls an uninterrupted run makes."
    real, n = os.replace, [0]
    def replace(a, b): n[0] += 1; real(a, b)
    os.replace = replace
    try: run_train(ov, Path(tempfile.mkdtemp()))
    finally: os.replace = real
    return n[0]

def kill_train(ov:dict, work:Path, k:int, after:bool)->int:
    "Fork a run and let it kill itself at its k-th rename; its exit code (-9 when killed)."
    import multiprocessing as mp
    proc = mp.get_context('fork').Process(target=_train_child, args=(ov, str(work), k, after)); proc.start(); proc.join()
    return proc.exitcode

def set_problems(work:Path)->list:
    "What makes the outputs in `work` not one set (empty: consistent)."
    import json
    from agrinb.core import load_checkpoint
    from agrinb.mapping import KIND
    out = [f'left {f.name}' for f in work.iterdir() if f.name.startswith('.')]
    ck, hist, best = work / f'{KIND}-train.pt', work / 'history.json', work / f'{KIND}.pt'
    if not ck.exists(): return out + [f'{f.name} without a train checkpoint' for f in (hist, best) if f.exists()]
    run = load_checkpoint(ck)['state']['fit']['run']
    if not hist.exists() or json.loads(hist.read_text()) != run['history']: out.append(f"history.json is not the checkpoint's (step {run['step']})")
    scored = [h for h in run['history'] if 'val_mFscore' in h]
    if scored:
        top = max(scored, key=lambda h: h['val_mFscore'])   # the first best epoch (an equal score later does not replace it)
        b = load_checkpoint(best)['meta'] if best.exists() else None
        if b is None or b['epoch'] != top['epoch'] or b['metrics']['mFscore'] != top['val_mFscore']:
            out.append(f"best model of epoch {None if b is None else b['epoch']}, the history's best is epoch {top['epoch']}")
    elif best.exists(): out.append('a best model before any validation')
    return out

def bench_train(kills:int, seed:int):
    from agrinb.core import load_checkpoint
    from agrinb.mapping import commit_outputs, KIND
    rng = random.Random(seed); ov = train_samples(Path(tempfile.mkdtemp()))
    full = Path(tempfile.mkdtemp()); run_train(ov, full); n = count_renames(ov)
    want = load_checkpoint(full / f'{KIND}-train.pt')['state']['fit']['model']
    mixed_kill = mixed_start = mixed_end = not_identical = left = 0; at = []
    for i in range(kills):
        k, after = rng.randint(1, n), rng.random() < 0.5; work = Path(tempfile.mkdtemp())
        code = kill_train(ov, work, k, after); at.append(f"{k}{'+' if after else '-'}")
        if code != -signal.SIGKILL: raise RuntimeError(f'kill {i}: the run ended with exit code {code} before rename {k}')
        mixed_kill += bool(set_problems(work))
        commit_outputs(work); p = set_problems(work); mixed_start += bool(p)
        if p: print(f'kill at rename {at[-1]}: after the next start {p}')
        run_train(ov, work); p = set_problems(work); mixed_end += bool(p)
        got = load_checkpoint(work / f'{KIND}-train.pt')['state']['fit']['model']
        not_identical += not same(want, got); left += len([f for f in work.iterdir() if f.name.startswith('.')])
    print(f'train: {kills} kills at renames {at} (of {n} per run; - before, + after): mixed right after the kill {mixed_kill}, '
          f'mixed after the next start {mixed_start}, mixed after the resumed run {mixed_end}, final weights not bit-identical '
          f'{not_identical}, hidden files left after the resumed run {left}')

# ---- (4) the map session's export: three files, one set ------------------------------------------------------
def export_session(n_labels:int):
    "A small session (a forest, no meta-training) adapted to the first `n_labels` of 8 labels."
    import numpy as np
    from agrinb.app import LabelingSession
    from agrinb.meta.baselines import RandomForest
    from agrinb.data.synthetic import make_datacube
    cube = make_datacube('Togo', size=(32, 32), seed=0)
    s = LabelingSession(cube, learner=RandomForest(seed=0, n_estimators=10), stats='raster', progress=False)
    crop, other = np.argwhere(cube.is_crop.values), np.argwhere(~cube.is_crop.values)
    for i in range(n_labels):
        (r, c), k = (crop[5 * i], 'crop') if i % 2 == 0 else (other[5 * i], 'non_crop')
        s.add_label(float(cube.y[r]), float(cube.x[c]), k)
    s.adapt(); s.predict(); return s

def export_state(d:Path)->tuple:
    "(labels in the GeoJSON, markers in the HTML map, the GeoTIFF's values or None, hidden files) of an export in `d`."
    import json, numpy as np, rasterio
    n_geo = len(json.loads((d / 'agrinb_labels.geojson').read_text())['features']) if (d / 'agrinb_labels.geojson').exists() else None
    n_html = (d / 'agrinb_map.html').read_text().count('L.circleMarker(') if (d / 'agrinb_map.html').exists() else None
    tif = None
    if (d / 'agrinb_proba.tif').exists():
        with rasterio.open(d / 'agrinb_proba.tif') as g: tif = g.read(1)
    return n_geo, n_html, tif, [f.name for f in d.iterdir() if f.name.startswith('.')]

def export_problems(d:Path, maps:dict)->list:
    "What makes the export in `d` not one set (`maps`: labels -> the probability map of that export)."
    import numpy as np
    n_geo, n_html, tif, hidden = export_state(d)
    out = [f'left {h}' for h in hidden]
    if n_geo != n_html: out.append(f'{n_geo} labels in the GeoJSON, {n_html} in the HTML map')
    if tif is None or n_geo not in maps or not np.array_equal(tif, maps[n_geo]): out.append(f'the GeoTIFF is not the map of the {n_geo} labels')
    return out

def _export_child(d:str, k:int, after:bool):
    "The killed process: an export of 6 labels over one of 4, SIGKILLed just before (or after) its k-th rename."
    s = export_session(6); die_at_rename(k, after); s.export(d)

EXPORT_CHILD = r'''
import importlib.util, sys
spec = importlib.util.spec_from_file_location('bench_kill_checkpoint', sys.argv[1])
bench = importlib.util.module_from_spec(spec); spec.loader.exec_module(bench)
bench._export_child(sys.argv[2], int(sys.argv[3]), sys.argv[4] == '1')
'''

def kill_export(d:Path, k:int, after:bool)->int:
    "Run an export in a new process (not forked: dask's thread pool does not survive a fork) that kills itself at its k-th rename."
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    return subprocess.run([sys.executable, '-c', EXPORT_CHILD, __file__, str(d), str(k), str(int(after))], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode

def bench_sets(kills:int, seed:int):
    from agrinb.core import commit_set
    rng = random.Random(seed); first = export_session(4); second = export_session(6)
    maps = {4: first.proba.values, 6: second.proba.values}
    real, n = os.replace, [0]
    def count(a, b): n[0] += 1; real(a, b)
    os.replace = count
    try: second.export(Path(tempfile.mkdtemp()))
    finally: os.replace = real
    mixed_kill = mixed_start = 0; at, which = [], []
    for i in range(kills):
        d = Path(tempfile.mkdtemp()); first.export(d)
        k, after = rng.randint(1, n[0]), rng.random() < 0.5
        code = kill_export(d, k, after); at.append(f"{k}{'+' if after else '-'}")
        if code != -signal.SIGKILL: raise RuntimeError(f'kill {i}: the export ended with exit code {code} before rename {k}')
        mixed_kill += bool(export_problems(d, maps))
        commit_set(d, 'agrinb'); p = export_problems(d, maps); mixed_start += bool(p)
        if p: print(f'kill at rename {at[-1]}: after the next start {p}')
        which.append(export_state(d)[0])
    print(f'export: {kills} kills at renames {at} (of {n[0]} per export; - before, + after): mixed right after the kill '
          f'{mixed_kill}, mixed after the next start {mixed_start}; labels of the set left (4 the earlier, 6 the killed): {which}')

def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--kills', type=int, default=20); ap.add_argument('--n', type=int, default=1_000_000)
    ap.add_argument('--seed', type=int, default=0); ap.add_argument('--learners', action='store_true')
    ap.add_argument('--train', action='store_true'); ap.add_argument('--sets', action='store_true'); a = ap.parse_args()
    if a.sets: return bench_sets(a.kills, a.seed)
    if a.learners: return bench_learners(a.kills, a.seed)
    if a.train: return bench_train(a.kills, a.seed)
    import torch
    from agrinb.core import load_checkpoint, AgrinbError
    from agrinb.meta.core import _remove_orphans
    rng = random.Random(a.seed); d = Path(tempfile.mkdtemp()); ck = d / 'm.pt'
    mixed = unreadable = orphans_after_kill = orphans_after_start = 0; steps = []
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    for k in range(a.kills):
        proc = subprocess.Popen([sys.executable, '-c', CHILD, str(ck), str(a.n)], env=env, stdout=subprocess.PIPE, text=True)
        proc.stdout.readline()                        # imported: from now on it writes continuously
        time.sleep(rng.uniform(0.05, 1.0))            # a random moment inside the write loop
        proc.send_signal(signal.SIGKILL); proc.wait()
        orphans_after_kill += len(list(d.glob('.m.pt.*.tmp')))
        if ck.exists():
            try:
                obj = load_checkpoint(ck, 'Bench'); s = obj['state']; i = int(s['step'])
                if not (bool((s['a'] == i).all()) and bool((s['b'] == i).all()) and obj['meta']['step'] == i): mixed += 1
                steps.append(i)
            except AgrinbError as ex: unreadable += 1; print('unreadable:', ex)
        _remove_orphans(ck)                             # what the next fit_loop start does
        orphans_after_start += len(list(d.glob('.m.pt.*.tmp')))
    print(f'kills {a.kills}: unreadable {unreadable}, mixed {mixed}, orphan .tmp after kill {orphans_after_kill}, '
          f'after next start {orphans_after_start}; step on disk after each kill: {steps}')

if __name__ == '__main__': main()
