"""SIGKILL at random moments: (1) a process that keeps rewriting a checkpoint (core.save_checkpoint -> atomic_path,
fsync); (2) with --learners, the `meta_fit` of every resumable learner (MAML, TIML, Pretrained, ProtoNet).

(1) After each kill the file under its final name must load (checksum checked) and be one whole iteration (every
tensor from the same step); `.tmp` files left by a killed write are counted, then removed the way `fit_loop` does
on its next start (`agrinb.meta.core._remove_orphans`), and counted again.

(2) Each kill (of a forked process) lands at a random moment of a learner's run (each step slowed by a sleep,
which changes no number);
the run is then resumed from its checkpoint and its final weights compared, bit for bit, with an uninterrupted
run's; `.tmp` files are counted after the resume. `tests/test_kill_resume.py` runs one kill per learner.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_kill_checkpoint.py --kills 20
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_kill_checkpoint.py --learners --kills 20
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

LEARNERS = ('MAML', 'TIML', 'Pretrained', 'ProtoNet')
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
    if name == 'Pretrained':
        lrn = Pretrained(in_features=4, hidden=8, dropout=0.3)
        lrn.meta_fit(tr, va, steps=steps, batch_size=16, eval_every=1, seed=1, **kw)
        return {f'{m}.{k}': v for m, sd in lrn.state().items() for k, v in sd.items()}
    lrn = ProtoNet(in_features=4, hidden=8, dropout=0.3, seed=1)
    lrn.meta_fit(tr, va, steps=steps, meta_batch=2, k=2, q=2, eval_every=1, **kw)
    return {k: v.detach().clone() for k, v in lrn.model.state_dict().items()}

def _learner_child(name:str, d:str, sleep:float):
    "The killed process (forked: nothing to import again): `name`'s run with every step slowed by `sleep` s."
    import agrinb.meta.core as core, agrinb.meta.maml as maml, agrinb.meta.baselines as baselines
    fit = core.fit_loop
    def slow_fit(step, *a, **kw):   # the kill lands mid-run; no number changes
        def slow(s, rng): time.sleep(sleep); return step(s, rng)
        return fit(slow, *a, **kw)
    maml.fit_loop = baselines.fit_loop = slow_fit
    run_learner(name, d)

def kill_learner(name:str, d:Path, delay:float, sleep:float=0.05)->int:
    "Fork a process running `name`'s meta_fit, SIGKILL it `delay` s after its first checkpoint; the step on disk."
    import multiprocessing as mp
    from agrinb.core import load_checkpoint
    proc = mp.get_context('fork').Process(target=_learner_child, args=(name, str(d), sleep)); proc.start()
    ck, t0 = Path(d) / f'{name}.pt', time.time()
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

def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--kills', type=int, default=20); ap.add_argument('--n', type=int, default=1_000_000)
    ap.add_argument('--seed', type=int, default=0); ap.add_argument('--learners', action='store_true'); a = ap.parse_args()
    if a.learners: return bench_learners(a.kills, a.seed)
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
