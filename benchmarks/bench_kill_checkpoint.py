"""SIGKILL a process that keeps rewriting a checkpoint (core.save_checkpoint -> atomic_path, fsync) at random moments.

After each kill the file under its final name must load (checksum checked) and be one whole iteration (every
tensor from the same step); `.tmp` files left by a killed write are counted, then removed the way `fit_loop` does
on its next start (`agrinb.meta.core._remove_orphans`), and counted again.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_kill_checkpoint.py --kills 20
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

def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--kills', type=int, default=20); ap.add_argument('--n', type=int, default=1_000_000)
    ap.add_argument('--seed', type=int, default=0); a = ap.parse_args()
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
