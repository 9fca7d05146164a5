#!/usr/bin/env python
"""Benchmark agrinb's task-batched MAML against a plain per-task loop, and time adaptation and prediction.

Second-order outer step: LSTM 18 -> 128 over 12 steps, 32 tasks x (20 support + 8 query), 1 inner step.
Reference: one task at a time with torch.func.functional_call + torch.autograd.grad(create_graph=True) (the
pattern learn2learn / higher use), measured in the same run on the same model and data. Peak memory of each
variant is measured in a fresh subprocess (peak RSS during the step above the RSS before it, from /proc, or
resource.getrusage max RSS where /proc cannot reset the peak) on CPU, and
with torch.cuda.max_memory_allocated on CUDA.

    python benchmarks/bench_maml.py                 # CPU (or CUDA when available), table
    python benchmarks/bench_maml.py --device cpu --threads 2 --json bench.json
    python benchmarks/bench_maml.py --threads 1 --ops --no-memory   # op counts, CPU times
    python benchmarks/bench_maml.py --threads 1 --no-memory --many 100   # adapt_many vs 100 adapt calls

`adapt_many` (100 support sets of 20 labels, 250 steps each, one task-batched pass) is timed against 100 `adapt`
calls with the same seed, and the machine's float32 matmul rate (1024 x 1024) is measured in the same run, so
figures from different machines can be read side by side; prediction is also given in GFLOP/s (multiply-adds x 2 of
the LSTM's products, `predict_flops`) and as a share of that matmul rate, per wall second and, on CPU, per CPU second
(the figure that survives a machine shared with other work).
"""
import argparse, json, os, platform, resource, statistics, subprocess, sys, time
import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

from agrinb.core import get_device
from agrinb.models.lstm import LSTMClassifier
from agrinb.meta.maml import MAML
from agrinb.meta.core import meta_backward, task_losses
from agrinb.tasks.pixels import toy_tasks


def make_batch(K, n_s, n_q, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    sx, qx = torch.randn(K, n_s, 12, 18, generator=g), torch.randn(K, n_q, 12, 18, generator=g)
    sy = torch.arange(n_s).remainder(2).expand(K, n_s).contiguous()
    qy = torch.arange(n_q).remainder(2).expand(K, n_q).contiguous()
    return [t.to(device) for t in (sx, sy, qx, qy)]


def loop_step(model, params, sx, sy, qx, qy, lr=1e-3):
    "The per-task reference: functional_call + autograd.grad(create_graph=True), one task at a time."
    K, total = sx.shape[0], 0
    for k in range(K):
        z = functional_call(model, params, (sx[k],))
        loss = F.binary_cross_entropy_with_logits(z[:, 0], sy[k].float())
        g = torch.autograd.grad(loss, list(params.values()), create_graph=True)
        p = {n: v - lr * gi for (n, v), gi in zip(params.items(), g)}
        zq = functional_call(model, p, (qx[k],))
        total = total + F.binary_cross_entropy_with_logits(zq[:, 0], qy[k].float()) / K
    total.backward()


def batched_step(model, params, sx, sy, qx, qy, lr=1e-3):
    meta_backward(model, params, sx, sy, qx, qy, inner_lr=lr, inner_steps=1)


def sync(device):
    if device.type == 'cuda': torch.cuda.synchronize()


def timeit(fn, device, repeats, warmup):
    "Wall and CPU seconds (process_time: all threads of this process) of each repeat."
    for _ in range(warmup): fn(); sync(device)
    ts, cs = [], []
    for _ in range(repeats):
        sync(device); t, c = time.perf_counter(), time.process_time(); fn(); sync(device)
        ts.append(time.perf_counter() - t); cs.append(time.process_time() - c)
    return ts, cs


def op_count(fn):
    "Number of aten operator calls of one run of fn (torch profiler)."
    from torch.profiler import profile
    with profile() as prof: fn()
    return sum(e.count for e in prof.key_averages() if e.key.startswith('aten::'))


def setup(device, K, seed=0):
    torch.manual_seed(seed)
    model = LSTMClassifier(18, 128, dropout=0.2).to(device).train()
    params = dict(model.named_parameters())
    return model, params, make_batch(K, 20, 8, device)


def _rss_kib(field):
    with open('/proc/self/status') as f:
        return next(int(l.split()[1]) for l in f if l.startswith(field + ':'))


def worker(variant, device, K):
    "Run one variant once in this fresh process; print its peak memory above the baseline (bytes)."
    device = torch.device(device)
    model, params, data = setup(device, K)
    fn = {'agrinb': batched_step, 'loop': loop_step}[variant]
    if device.type == 'cuda':
        torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
        fn(model, params, *data); torch.cuda.synchronize()
        print(torch.cuda.max_memory_allocated() - base)
    else:
        # reset the kernel's peak-RSS mark (Linux: 5 > clear_refs) so the peak is this step's, not the imports'
        try:
            with open('/proc/self/clear_refs', 'w') as f: f.write('5')
            reset = True
        except OSError: reset = False
        base = _rss_kib('VmRSS') if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        fn(model, params, *data)
        peak = _rss_kib('VmHWM') if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print((peak - base) * 1024)


def peak_memory(variant, device, K, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, __file__, '--_worker', variant, '--device', str(device), '--tasks', str(K),
                          '--threads', str(threads)], capture_output=True, text=True, env=env)
    if out.returncode: raise RuntimeError(out.stderr[-2000:])
    return int(out.stdout.strip().splitlines()[-1])


def matmul_gflops(device, n=1024, repeats=5, cpu=False):
    "float32 matmul rate of this machine, now (GFLOP/s per wall second, or per CPU second with `cpu`; median of `repeats`)."
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    ts, cs = timeit(lambda: a @ b, device, repeats, 2)
    return 2 * n ** 3 / statistics.median(cs if cpu else ts) / 1e9


def predict_flops(T=12, B=18, H=128, n_out=1):
    "Multiply-adds x 2 of one series through the LSTM classifier: input products, recurrent products (h_0 = 0), head."
    return 2 * T * B * 4 * H + 2 * (T - 1) * H * 4 * H + 2 * H * n_out


def bench_many(learner, device, n_tasks, repeats):
    "adapt_many on `n_tasks` Tasks of 20 support (+ 20 query) series vs one adapt call per task, same seed and steps."
    tasks = toy_tasks(n_tasks, n=40, seed=3)
    many = lambda: learner.adapt_many(tasks, steps=250, seed=0, device=device)
    loop = lambda: [learner.adapt(t, steps=250, seed=0, device=device) for t in tasks]
    tm, cm = timeit(many, device, repeats, 1); tl, cl = timeit(loop, device, repeats, 0)
    return dict(n_tasks=n_tasks, support=len(tasks[0].support_y), adapt_many_s=statistics.median(tm),
                adapt_loop_s=statistics.median(tl), many_speedup=statistics.median(tl) / statistics.median(tm),
                adapt_many_cpu_s=statistics.median(cm), adapt_loop_cpu_s=statistics.median(cl),
                many_speedup_cpu=statistics.median(cl) / statistics.median(cm))


def bench(args):
    device = get_device(args.device)
    res = dict(device=str(device), threads=torch.get_num_threads(), torch=torch.__version__, cpu=platform.processor() or platform.machine(),
               tasks=args.tasks, support=20, query=8, hidden=128, time_steps=12, repeats=args.repeats)
    res['matmul_gflops'] = matmul_gflops(device)
    if device.type == 'cpu': res['matmul_gflops_cpu'] = matmul_gflops(device, cpu=True)
    model, params, data = setup(device, args.tasks)
    # interleave the two variants so that background load hits both alike
    ts, cs = {'agrinb': [], 'loop': []}, {'agrinb': [], 'loop': []}
    variants = (('agrinb', batched_step), ('loop', loop_step))
    for _, fn in variants:
        for _ in range(args.warmup): model.zero_grad(); fn(model, params, *data); sync(device)
    for _ in range(args.repeats):
        for name, fn in variants:
            model.zero_grad(); sync(device); t, c = time.perf_counter(), time.process_time()
            fn(model, params, *data); sync(device)
            ts[name].append(time.perf_counter() - t); cs[name].append(time.process_time() - c)
    res['outer_step_s'] = {k: statistics.median(v) for k, v in ts.items()}
    res['outer_step_min_s'] = {k: min(v) for k, v in ts.items()}
    res['outer_step_cpu_s'] = {k: statistics.median(v) for k, v in cs.items()}
    res['speedup'] = res['outer_step_s']['loop'] / res['outer_step_s']['agrinb']
    res['speedup_cpu'] = res['outer_step_cpu_s']['loop'] / res['outer_step_cpu_s']['agrinb']
    if args.ops:
        res['outer_step_ops'] = {k: op_count(lambda: (model.zero_grad(), fn(model, params, *data))) for k, fn in variants}
    if not args.no_memory:
        res['peak_memory_mb'] = {k: peak_memory(k, device, args.tasks, res['threads']) / 2**20 for k in ('agrinb', 'loop')}
    # adaptation: 250 SGD steps on 20 labels (10 + 10), the default of MAML.adapt (dropout 0.2 as in training)
    learner = MAML(device=device)
    r = np.random.default_rng(0)
    x = r.normal(size=(20, 12, 18)).astype(np.float32); y = np.arange(20) % 2
    ad, adc = timeit(lambda: learner.adapt(x, y, steps=250), device, args.repeats, 1)
    res['adapt_250_steps_s'], res['adapt_250_steps_cpu_s'] = statistics.median(ad), statistics.median(adc)
    if hasattr(learner, 'adapt_many'):      # also the default: steps chosen on folds of the support set
        ad, adc = timeit(lambda: learner.adapt(x, y), device, args.repeats, 1)
        res['adapt_default_s'], res['adapt_default_cpu_s'] = statistics.median(ad), statistics.median(adc)
        if args.many: res['many'] = bench_many(learner, device, args.many, args.many_repeats)
    # batched prediction throughput (numpy in, numpy out, as a user calls it)
    pred = learner.adapt(x, y, steps=1)
    X = r.normal(size=(args.predict_n, 12, 18)).astype(np.float32)
    pt, pc = timeit(lambda: pred.predict_proba(X), device, max(1, args.repeats // 2), 1)
    res['predict_series_per_s'] = args.predict_n / statistics.median(pt)
    res['predict_series_per_cpu_s'] = args.predict_n / statistics.median(pc)
    res['predict_gflops'] = res['predict_series_per_s'] * predict_flops() / 1e9
    res['predict_of_matmul'] = res['predict_gflops'] / res['matmul_gflops']
    if 'matmul_gflops_cpu' in res:
        res['predict_gflops_cpu'] = res['predict_series_per_cpu_s'] * predict_flops() / 1e9
        res['predict_of_matmul_cpu'] = res['predict_gflops_cpu'] / res['matmul_gflops_cpu']
    return res


def table(res):
    m, ops = res.get('peak_memory_mb', {}), res.get('outer_step_ops', {})
    o, oc = res['outer_step_s'], res['outer_step_cpu_s']
    rows = [('outer step, agrinb (batched)', f"{o['agrinb'] * 1e3:9.1f} ms", f"{oc['agrinb'] * 1e3:9.1f} ms",
             f"{m.get('agrinb', float('nan')):8.1f} MB", f"{ops.get('agrinb', '')}"),
            ('outer step, per-task loop', f"{o['loop'] * 1e3:9.1f} ms", f"{oc['loop'] * 1e3:9.1f} ms",
             f"{m.get('loop', float('nan')):8.1f} MB", f"{ops.get('loop', '')}"),
            ('speed-up (loop / agrinb)', f"{res['speedup']:9.2f} x", f"{res['speedup_cpu']:9.2f} x", '', ''),
            ('adapt: 250 steps, 20 labels', f"{res['adapt_250_steps_s'] * 1e3:9.1f} ms", f"{res['adapt_250_steps_cpu_s'] * 1e3:9.1f} ms", '', ''),
            *([('adapt: default (steps chosen)', f"{res['adapt_default_s'] * 1e3:9.1f} ms", f"{res['adapt_default_cpu_s'] * 1e3:9.1f} ms", '', '')]
              if 'adapt_default_s' in res else []),
            *([(f"adapt_many: {mn['n_tasks']} x {mn['support']} labels", f"{mn['adapt_many_s']:9.2f} s ", f"{mn['adapt_many_cpu_s']:9.2f} s ", '', ''),
               (f"{mn['n_tasks']} adapt calls", f"{mn['adapt_loop_s']:9.2f} s ", f"{mn['adapt_loop_cpu_s']:9.2f} s ", '', ''),
               ('speed-up (calls / adapt_many)', f"{mn['many_speedup']:9.2f} x", f"{mn['many_speedup_cpu']:9.2f} x", '', '')] if (mn := res.get('many')) else []),
            ('matmul float32 1024^2 (GFLOP/s)', f"{res['matmul_gflops']:12.1f}", f"{res.get('matmul_gflops_cpu', float('nan')):12.1f}", '', ''),
            ('predict_proba (series/s)', f"{res['predict_series_per_s']:12.0f}", f"{res['predict_series_per_cpu_s']:12.0f}", '', ''),
            ('predict_proba (GFLOP/s)', f"{res['predict_gflops']:12.1f}", f"{res.get('predict_gflops_cpu', float('nan')):12.1f}", '', ''),
            ('predict_proba / matmul rate', f"{res['predict_of_matmul'] * 100:11.0f}%", f"{res.get('predict_of_matmul_cpu', float('nan')) * 100:11.0f}%", '', '')]
    head = (f"agrinb MAML benchmark on {res['device']} ({res['threads']} threads, torch {res['torch']}): second-order outer "
            f"step, LSTM 18->128 x 12 steps, {res['tasks']} tasks x (20 support + 8 query), 1 inner step; "
            f"median of {res['repeats']} repeats; 'cpu' = process CPU time (per CPU-second for throughput)")
    w = max(len(r[0]) for r in rows)
    return '\n'.join([head, f"{'':{w}}  {'wall':>12}  {'cpu':>12}  {'peak mem':>11}  {'aten ops':>8}"] +
                     [f"{a:{w}}  {b:>12}  {c:>12}  {d:>11}  {e:>8}" for a, b, c, d, e in rows])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--device', default=None, help='cpu, cuda (default: CUDA when available)')
    ap.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch default)')
    ap.add_argument('--tasks', type=int, default=32)
    ap.add_argument('--repeats', type=int, default=7)
    ap.add_argument('--warmup', type=int, default=2)
    ap.add_argument('--predict-n', type=int, default=100_000)
    ap.add_argument('--many', type=int, default=100, help='tasks for adapt_many vs adapt calls (0: skip)')
    ap.add_argument('--many-repeats', type=int, default=1)
    ap.add_argument('--no-memory', action='store_true', help='skip the peak-memory subprocesses')
    ap.add_argument('--ops', action='store_true', help='also count aten operator calls per outer step (profiler)')
    ap.add_argument('--json', metavar='PATH', help='also write the results as JSON (- for stdout)')
    ap.add_argument('--_worker', help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.threads: torch.set_num_threads(args.threads)
    if args._worker: return worker(args._worker, args.device or 'cpu', args.tasks)
    res = bench(args)
    print(table(res))
    if args.json == '-': print(json.dumps(res, indent=2))
    elif args.json:
        with open(args.json, 'w') as f: json.dump(res, f, indent=2)


if __name__ == '__main__':
    main()
