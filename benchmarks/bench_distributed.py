#!/usr/bin/env python
"""Meta-training throughput (tasks per second) of `MAML.meta_fit` on 1 or N torch.distributed ranks (gloo on CPU).

Each setting runs in fresh processes (torch.multiprocessing spawn, a file store, gloo): every rank sets its torch
thread count, runs one warm-up outer step, meets the others at a barrier, then times `meta_fit(steps=S)`; the
figure is S x meta_batch / (rank 0's seconds). The settings compared on a 2-core CPU: 1 rank x 1 thread,
1 rank x 2 threads, 2 ranks x 1 thread. Repeated --repeats times in turn; medians are reported with the load
average seen before and after (the machine may be shared). NCCL (CUDA) is not exercised here.

On a shared machine whose load exceeds its cores the wall-clock figure says more about the neighbours than about
agrinb, so each setting also reports S x meta_batch / (the largest CPU seconds of any rank, all its threads): the
rate if every thread had a core of its own and nothing waited. `--val-frac 0` times training alone (by default
10 % of the tasks validate at the last step, each rank adapting its share of them).

    OMP_NUM_THREADS=1 python benchmarks/bench_distributed.py                       # table
    OMP_NUM_THREADS=1 python benchmarks/bench_distributed.py --steps 10 --repeats 3 --json out.json
"""
import argparse, json, os, statistics, tempfile, time
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from agrinb.meta.maml import MAML
from agrinb.tasks.pixels import toy_tasks

def _worker(rank, world, threads, store, a, out):
    torch.set_num_threads(threads)
    if world > 1: dist.init_process_group('gloo', init_method=f'file://{store}', rank=rank, world_size=world)
    try:
        tasks = toy_tasks(64, n=40, T=12, B=18, seed=0)
        lr = MAML(18, hidden=a.hidden, device='cpu', seed=0)
        kw = dict(meta_batch=a.meta_batch, k_support=5, k_query=5, progress=False, first_order=a.first_order, val_frac=a.val_frac)
        lr.meta_fit(tasks, steps=1, **kw)                 # warm-up
        if world > 1: dist.barrier()
        t0, c0 = time.perf_counter(), time.process_time(); lr.meta_fit(tasks, steps=a.steps, **kw)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        with open(f'{out}.{rank}', 'w') as f: json.dump({'seconds': dt, 'cpu_seconds': dc}, f)
    finally:
        if world > 1: dist.destroy_process_group()

def measure(world, threads, a)->tuple:
    "Tasks per second of one setting, in fresh processes: per wall second of rank 0, per CPU second of the busiest rank."
    with tempfile.TemporaryDirectory() as d:
        out = f'{d}/out.json'
        mp.spawn(_worker, args=(world, threads, f'{d}/store', a, out), nprocs=world, join=True)
        rs = [json.load(open(f'{out}.{r}')) for r in range(world)]
        return a.steps * a.meta_batch / rs[0]['seconds'], a.steps * a.meta_batch / max(r['cpu_seconds'] for r in rs)

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--steps', type=int, default=8); p.add_argument('--meta-batch', type=int, default=32)
    p.add_argument('--hidden', type=int, default=64); p.add_argument('--first-order', action='store_true')
    p.add_argument('--repeats', type=int, default=3); p.add_argument('--json', default=None)
    p.add_argument('--val-frac', type=float, default=0.1, help='share of the tasks validated at the last step (0: none)')
    a = p.parse_args()
    settings = [(1, 1), (1, 2), (2, 1)]   # (ranks, threads per rank)
    load0 = os.getloadavg(); runs = {s: [] for s in settings}
    for _ in range(a.repeats):
        for s in settings: runs[s].append(measure(*s, a))
    load1 = os.getloadavg()
    med = {s: statistics.median(w for w, _ in v) for s, v in runs.items()}
    medc = {s: statistics.median(c for _, c in v) for s, v in runs.items()}
    print(f'MAML.meta_fit, LSTM 18->{a.hidden}, meta_batch {a.meta_batch}, {a.steps} timed steps, '
          f'{"first" if a.first_order else "second"}-order, val_frac {a.val_frac}, {os.cpu_count()} CPUs; '
          f'load average before {load0[0]:.2f}, after {load1[0]:.2f}')
    for (w, t), v in runs.items():
        print(f'  {w} rank(s) x {t} thread(s): median {med[(w, t)]:7.1f} tasks/s (wall)  {medc[(w, t)]:7.1f} tasks/CPU-s of the '
              f'busiest rank   runs (wall): {", ".join(f"{x:.1f}" for x, _ in v)}')
    r1, r2 = med[(2, 1)] / med[(1, 1)], med[(2, 1)] / med[(1, 2)]
    c1, c2 = medc[(2, 1)] / medc[(1, 1)], medc[(2, 1)] / medc[(1, 2)]
    print(f'  2 ranks x 1 thread / 1 rank x 1 thread: wall {r1:.2f}x, CPU {c1:.2f}x (goal >= 1.6x);  '
          f'/ 1 rank x 2 threads: wall {r2:.2f}x, CPU {c2:.2f}x')
    if a.json:
        from agrinb.core import atomic_path
        with atomic_path(a.json) as tmp:
            open(tmp, 'w').write(json.dumps({'args': vars(a), 'load_before': load0, 'load_after': load1,
                                             'runs': {f'{w}x{t}': v for (w, t), v in runs.items()}, 'speedup_2v1': r1, 'speedup_2v1x2': r2,
                                             'cpu_speedup_2v1': c1, 'cpu_speedup_2v1x2': c2}, indent=1))

if __name__ == '__main__': main()
