"""Distributed meta-training on torch.distributed (gloo, CPU, real processes via torch.multiprocessing spawn).

2 ranks x 16 tasks give the meta-gradient of one process on the same 32 tasks (float64); a 2-rank run stopped after
its step-4 checkpoint and resumed ends with the weights of an uninterrupted 2-rank run; only rank 0 writes; 2 ranks
share an evaluation (`benchmark_runs`) and return the rows of one process; a torchrun demo prints the one-process table."""
import os, tempfile
from pathlib import Path
import numpy as np, pytest, torch
import torch.distributed as dist
import torch.multiprocessing as mp
from agrinb.meta.maml import MAML
from agrinb.meta import distributed as D
from agrinb.tasks.pixels import toy_tasks, prepare_task

K, Q, BATCH = 3, 2, 32

def _tasks(n): return toy_tasks(n, n=24, T=6, B=4, seed=3)

class _Double(torch.nn.Module):
    "Casts the (float32, checked) series to float64 inside the model."
    def forward(self, x): return x.double()

def _learner():
    torch.manual_seed(0)   # a plain float64 module (the hand-written LSTM kernels are float32)
    net = torch.nn.Sequential(_Double(), torch.nn.Flatten(), torch.nn.Linear(6 * 4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).double()
    return MAML(in_features=4, model=net, device='cpu')

def _meta_grad(batch=BATCH):
    "The gradient that one real outer step (`MAML._outer_step`) hands to the optimiser (SGD lr=0 leaves it in .grad)."
    lr = _learner(); train = [prepare_task(t, lr.device, 4, None, K + Q) for t in _tasks(40)]
    ps = lr._outer_params(); opt = torch.optim.SGD(ps, lr=0.0)
    loss = lr._outer_step(train, opt, np.random.default_rng(0), torch.Generator().manual_seed(0), batch, K, Q, 0.1, 1,
                          False, None, None, 0.0)
    return [p.grad.clone() for p in lr.model.parameters()], loss   # (step sizes: fixed 0.1 here, no gradient)

def _fit(steps, ck, resume=False):
    lr = _learner()
    lr.meta_fit(_tasks(12), steps=steps, meta_batch=8, k_support=K, k_query=Q, inner_lr=0.1, checkpoint_dir=ck,
                checkpoint_every=2, resume=resume, progress=False, seed=5, grad_clip=1.0, val_frac=0)   # no validation: the last state
    return {k: v.clone() for k, v in lr.model.state_dict().items()}, [r['train_loss'] for r in lr.history]

def _val_loss():
    "The validation loss of fixed episodes of 5 tasks (each rank adapts its share of them under torch.distributed)."
    from agrinb.tasks.pixels import draw_episodes
    lr = _learner(); val = [prepare_task(t, lr.device, 4, None, K + Q) for t in _tasks(5)]
    lr.fit_config.update(inner_lr=0.1, inner_steps=1, learn_lr=False)
    return lr._val_loss(val, [(val, draw_episodes(val, K, Q, np.random.default_rng(1)))], 2)

class _Counted:
    "A learner that counts the support sets it adapts to (each rank its own count)."
    def __init__(self, learner): self.learner, self.n = learner, 0
    def adapt_many(self, tasks, steps=None, seed=None, device=None):
        self.n += len(tasks); return self.learner.adapt_many(tasks, steps=5, seed=seed, device=device, lr=0.03)

def _bench():
    "Rows of `benchmark_runs` (3 tasks x 2 settings x 3 learners x 2 runs) and how many adaptations this process ran."
    import dataclasses
    from agrinb.demo import demo_tasks, QUICK
    from agrinb.eval import benchmark_runs
    from agrinb.meta.baselines import RandomInit
    b = demo_tasks(dataclasses.replace(QUICK, n_samples=3000), seed=0, progress=False)
    lrn = {'Random': _Counted(RandomInit(hidden=8, seed=0, device='cpu')), 'Random 2': _Counted(RandomInit(hidden=4, seed=1, device='cpu'))}
    runs = benchmark_runs(lrn, b.test, n_runs=2, shots=[5], seed=0, progress=False)
    return runs.drop(columns='seconds').to_json(orient='split'), sum(l.n for l in lrn.values())

def _worker(rank, world, store, out, phase):
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{store}', rank=rank, world_size=world)
    try:
        res = {}
        if phase == 'first':
            res['grad'], res['loss'] = _meta_grad()
            res['val'] = _val_loss()
            res['full'] = _fit(8, Path(out) / f'own{rank}')          # each rank its own folder: only rank 0 may write
            _fit(4, Path(out) / 'shared')                             # stopped after its step-4 checkpoint
        elif phase == 'bench': res['bench'] = _bench()
        else: res['resumed'] = _fit(8, Path(out) / 'shared', resume=True)
        torch.save(res, Path(out) / f'{phase}{rank}.pt')
    finally: dist.destroy_process_group()

def _spawn(d, phase, world=2):
    mp.spawn(_worker, args=(world, f'{d}/store-{phase}', d, phase), nprocs=world, join=True)
    return [torch.load(Path(d) / f'{phase}{r}.pt', weights_only=True) for r in range(world)]

@pytest.fixture(scope='module')
def runs():
    with tempfile.TemporaryDirectory() as d:
        first = _spawn(d, 'first'); resumed = _spawn(d, 'resume')
        files = {p.relative_to(d).as_posix() for p in Path(d).rglob('*.pt') if p.parent != Path(d)}
        yield first, resumed, files

def test_two_ranks_equal_one_process(runs):
    first, _, _ = runs
    g1, loss1 = _meta_grad()
    for r in range(2):
        for a, b in zip(first[r]['grad'], g1):
            assert a.dtype == torch.float64 and float((a - b).norm() / b.norm()) < 1e-10
        assert abs(first[r]['loss'] - loss1) < 1e-12 * abs(loss1)
    v1 = _val_loss()   # the validation loss: each rank adapted 2 or 3 of the 5 tasks, the mean is over all 5
    assert first[0]['val'] == first[1]['val'] and abs(first[0]['val'] - v1) < 1e-12 * abs(v1)
    # 16 tasks alone are a different meta-gradient: the comparison can fail
    g16, _ = _meta_grad(16); assert float((g16[0] - g1[0]).norm() / g1[0].norm()) > 1e-3

def test_resume_after_stop_is_bit_identical(runs):
    first, resumed, _ = runs
    for r in range(2):
        w_full, h_full = first[r]['full']; w_res, h_res = resumed[r]['resumed']
        assert all(torch.equal(w_full[k], w_res[k]) for k in w_full) and h_res == h_full
    assert all(torch.equal(first[0]['full'][0][k], first[1]['full'][0][k]) for k in first[0]['full'][0])  # ranks agree
    w1, _ = _fit(8, None)  # one process on the same 8-task meta-batches (float64): the same weights up to round-off
    assert all(torch.allclose(w1[k], first[0]['full'][0][k], rtol=1e-9, atol=1e-12) for k in w1)

def test_only_rank0_writes(runs):
    *_, files = runs
    assert files == {'own0/MAML.pt', 'shared/MAML.pt'}

def test_two_ranks_share_an_evaluation():
    "Each rank adapts a share of the (setting, learner) jobs; every rank ends with the one-process table."
    import pandas as pd
    with tempfile.TemporaryDirectory() as d: parts = _spawn(d, 'bench')
    one, n_one = _bench()
    assert parts[0]['bench'][0] == parts[1]['bench'][0] == one   # same rows, same order, same metrics
    n = [p['bench'][1] for p in parts]
    assert 0 < n[0] < n_one and sum(n) == n_one, (n, n_one)
    assert len(pd.read_json(__import__('io').StringIO(one), orient='split')) == 3 * 3 * 2 * 2

def test_meta_batch_smaller_than_world_is_refused():
    from agrinb.core import AgrinbError
    with pytest.raises(AgrinbError, match='at least one task per rank'): D.shard_slice(1, 0, 2, 'MAML')

def test_torchrun_demo(tmp_path):
    "`torchrun --nproc_per_node=2 -m agrinb.cli demo --distributed`: real processes, rank 0 alone prints and writes, the one-process table."
    import json, subprocess, sys
    cfg = tmp_path / 'tiny.yaml'
    cfg.write_text('n_samples: 3000\nhidden: 16\nmeta_steps: 4\nmeta_batch: 4\npretrain_steps: 4\nproto_steps: 4\n'
                   'eval_every: 2\nfinetune_steps: 5\nn_runs: 2\nshots: [5]\npresto_tasks: 4\npresto_rows: 16\npresto_steps: 3\n')
    out = tmp_path / 'r.json'
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(Path(__file__).parents[1])}
    p = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', '-m', 'agrinb.cli',
                        'demo', '--distributed', '--config', str(cfg), '--json', str(out), '--no-progress', '--device', 'cpu'],
                       env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count('agrinb demo:') == 1 and 'in each of 2 processes' in p.stdout
    doc = json.loads(out.read_text())
    assert doc['processes'] == 2 and doc['threads'] == 1
    full = [r for r in doc['results'] if r['setting'] == 'all']
    assert len(full) == 10 * 3 and all(0 <= r['auc_roc'] <= 1 for r in full)   # 10 learners x 3 tasks, none lost
    assert sorted(f.name for f in tmp_path.iterdir()) == ['r.json', 'tiny.yaml']
    # one process, the same command without torchrun: the same table (each learner trained whole by one rank, each
    # evaluation job run by one rank, with the seeds one process uses)
    one = tmp_path / 'one.json'
    p1 = subprocess.run([sys.executable, '-m', 'agrinb.cli', 'demo', '--config', str(cfg), '--json', str(one), '--no-progress',
                         '--device', 'cpu'], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert p1.returncode == 0, p1.stderr[-3000:]
    a, b = json.loads(one.read_text()), doc
    timeless = lambda rows: [{k: v for k, v in r.items() if k != 'seconds'} for r in rows]
    assert b['processes'] == 2 and a['processes'] == 1 and a['comparisons'] == b['comparisons']
    assert timeless(a['results']) == timeless(b['results'])
