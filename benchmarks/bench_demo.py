#!/usr/bin/env python
"""Time `agrinb demo` (quick or full) and profile it with cProfile: where the seconds go (meta-training per learner,
evaluation), and the functions with the most cumulative time.

Run the same command on two checkouts back to back (the machine is shared) and compare the ratios:

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_demo.py --quick --device cpu
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_demo.py --quick --no-presto --top 25 --json bench.json
"""
import argparse, cProfile, dataclasses, io, json, pstats, time
from agrinb.core import atomic_path
from agrinb.demo import run_demo, demo_config
from agrinb.extras import set_threads


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--quick', action='store_true', help='the QUICK budget (default FULL)')
    p.add_argument('--device', default='cpu')
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--seed', type=int, default=1)
    p.add_argument('--no-presto', action='store_true', help='leave the Presto learners out')
    p.add_argument('--no-profile', action='store_true', help='time only')
    p.add_argument('--top', type=int, default=20, help='functions listed by cumulative time')
    p.add_argument('--json', default=None, help='write the timings here')
    a = p.parse_args(argv)
    set_threads(a.threads)
    cfg = demo_config(quick=a.quick, overrides={'presto': False} if a.no_presto else None)
    prof = None if a.no_profile else cProfile.Profile()
    t0 = time.perf_counter()
    if prof: prof.enable()
    r = run_demo(config=cfg, seed=a.seed, device=a.device, progress=False)
    if prof: prof.disable()
    total = time.perf_counter() - t0
    print(f"demo ({'quick' if a.quick else 'full'}{', no Presto' if a.no_presto else ''}): {total:.1f} s on {a.device}, "
          f"{a.threads} thread(s)")
    for k, v in r.fit_seconds.items(): print(f'  {k:<16} {v:7.1f} s')
    if prof:
        s = io.StringIO(); pstats.Stats(prof, stream=s).sort_stats('cumulative').print_stats(a.top); print(s.getvalue())
    if a.json:
        with atomic_path(a.json) as tmp:
            with open(tmp, 'w') as f: json.dump({'seconds': total, 'fit_seconds': r.fit_seconds, 'quick': a.quick,
                                                 'config': dataclasses.asdict(cfg)}, f, indent=1)


if __name__ == '__main__': main()
