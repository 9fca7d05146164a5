"""Kill-and-resume for every resumable learner: a `meta_fit` SIGKILLed after a checkpoint and resumed ends with the
weights of an uninterrupted run, bit for bit (the fit loop checkpoints the torch, CUDA and numpy generators that drive
dropout and sampling), and leaves no temporary file. `benchmarks/bench_kill_checkpoint.py --learners` kills at random
moments, many times."""
import importlib.util, os
from pathlib import Path
import sys
import pytest, torch

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location('bench_kill_checkpoint', REPO / 'benchmarks' / 'bench_kill_checkpoint.py')
bench = importlib.util.module_from_spec(spec); spec.loader.exec_module(bench)

@pytest.mark.skipif(sys.platform != 'linux', reason='the killed run is a forked process')
@pytest.mark.parametrize('name', bench.LEARNERS)
def test_killed_meta_fit_resumes_bit_identically(name, tmp_path):
    full = bench.run_learner(name, None)
    step = bench.kill_learner(name, tmp_path, delay=0.0, sleep=0.1)
    assert 1 <= step < bench.STEPS                                 # killed part-way, after a checkpoint
    resumed = bench.run_learner(name, tmp_path, resume=True)
    assert resumed.keys() == full.keys()
    diff = {k: float((full[k].float() - resumed[k].float()).abs().max()) for k in full if not torch.equal(full[k], resumed[k])}
    assert not diff, diff
    assert not list(tmp_path.glob('.*.tmp'))
