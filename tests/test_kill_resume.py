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

@pytest.mark.skipif(sys.platform != 'linux', reason='the killed run is a forked process')
def test_killed_train_leaves_one_set(tmp_path):
    """`agrinb.mapping.train` killed just after chosen renames (the staged history written; the fit loop's first
    checkpoint written but nothing renamed beside it; the best model renamed but not the history; the last rename):
    after the next start (`commit_outputs`, what `train` does first) the three outputs are one set,
    nothing hidden is left, and the resumed run ends with the uninterrupted run's weights, bit for bit.
    `benchmarks/bench_kill_checkpoint.py --train` kills at random renames, many times."""
    from agrinb.core import load_checkpoint
    from agrinb.mapping import commit_outputs, KIND
    ov = bench.train_samples(tmp_path); full = tmp_path / 'full'; bench.run_train(ov, full)
    want = load_checkpoint(full / f'{KIND}-train.pt')['state']['fit']['model']
    assert not bench.set_problems(full)
    n = bench.count_renames(ov)
    for k, after in ((2, True), (4, True), (5, True), (n, True)):   # 1-3: staged best, history, manifest; 4: the train checkpoint; 5: the best renamed into place
        work = tmp_path / f'k{k}'
        assert bench.kill_train(ov, work, k, after) == -9
        commit_outputs(work); assert not bench.set_problems(work), (k, bench.set_problems(work))
        bench.run_train(ov, work)
        assert not bench.set_problems(work) and bench.same(want, load_checkpoint(work / f'{KIND}-train.pt')['state']['fit']['model'])

def test_killed_export_leaves_one_set(tmp_path):
    """The map session's export (labels GeoJSON, probability GeoTIFF, HTML map) of new labels killed at chosen renames
    over an earlier export: right after the kill the folder may be mixed; after `commit_set` (what the next export
    does first) it is one whole set, the earlier one when the kill came before the manifest, the new one after.
    `benchmarks/bench_kill_checkpoint.py --sets` kills at random renames, many times."""
    from agrinb.core import commit_set
    first, second = bench.export_session(4), bench.export_session(6)
    maps = {4: first.proba.values, 6: second.proba.values}
    for k, after, want in ((1, False, 4), (3, True, 4), (4, True, 6), (5, True, 6)):   # 1-3: the staged files; 4: the manifest; 5-7: the renames
        d = tmp_path / f'k{k}'; first.export(d)
        assert bench.kill_export(d, k, after) == -9
        if k == 5: assert bench.export_problems(d, maps)   # one file renamed, two not: mixed until the next start
        commit_set(d, 'agrinb'); assert not bench.export_problems(d, maps), (k, bench.export_problems(d, maps))
        assert bench.export_state(d)[0] == want
