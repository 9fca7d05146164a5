"""`agrinb demo --quick --json`: runs end to end in a subprocess and writes the documented JSON."""
import json, math, os, subprocess, sys
from pathlib import Path
import pytest

MODELS = ['TIML', 'MAML', 'MAML+info', 'Pretrained', 'Random', 'Random forest', 'ProtoNet']
MODELS += ['Presto probe', 'Presto + forest', 'PrestoTIML']           # agrinb.meta.presto's learners (issue 13)
TASKS = ['Togo', 'Kenya', 'Brazil']
FIELDS = ['model', 'task', 'auc_roc', 'auc_roc_se', 'f1', 'f1_se', 'f1_calibrated', 'f1_calibrated_se',
          'auc_minus_rf', 'auc_minus_rf_se']
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp('demo') / 'sub' / 'demo.json'
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(REPO)}
    p = subprocess.run([sys.executable, '-m', 'agrinb.cli', 'demo', '--quick', '--json', str(out), '--device', 'cpu',
                        '--seed', '1'], capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
    return p, out


def test_quick_demo_runs_and_prints_tables(quick):
    p, out = quick
    assert p.returncode == 0, p.stderr[-3000:]
    for word in MODELS + TASKS + ['AUC', 'random forest']: assert word in p.stdout, word
    assert out.exists()
    assert not [f for f in out.parent.iterdir() if f.name != out.name]   # written atomically, no temp files left


def test_quick_demo_json_schema(quick):
    p, out = quick
    assert p.returncode == 0, p.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert set(doc) >= {'results', 'seconds', 'device'}
    assert doc['device'] == 'cpu' and doc['seconds'] > 0
    assert doc['threads'] == 1                                        # agrinb.extras.set_threads' default
    rows = doc['results']
    for r in rows:
        for f in FIELDS: assert f in r, (f, r)
        for f in FIELDS[2:]: assert r[f] is None or isinstance(r[f], (int, float)), (f, r[f])
        assert 0 <= r['auc_roc'] <= 1 and 0 <= r['f1'] <= 1
    full = [r for r in rows if r.get('setting', 'all') == 'all']
    assert {r['model'] for r in full} == set(MODELS)
    assert {r['task'] for r in full} == set(TASKS)
    assert len(full) == len(MODELS) * len(TASKS)
    for r in full:
        if r['model'] == 'Random forest': assert r['auc_minus_rf'] == 0
    assert any(r.get('setting') == 'shots' for r in rows)            # k-shot results as well as the full support


def test_demo_bad_arguments(capsys):
    from agrinb.cli import main
    with pytest.raises(SystemExit) as e: main(['demo', '--no-such-flag'])
    assert e.value.code == 2 and 'usage: agrinb demo' in capsys.readouterr().err    # argparse's own usage error
    assert main(['demo', '--quick', '--device', 'nonsense']) == 2
    err = capsys.readouterr().err
    assert '--device' in err and 'nonsense' in err and err.startswith('agrinb demo: error: ') and err.count('\n') == 1
    assert main(['demo', '--quick', '--set', 'n_run=1']) == 2
    assert "Did you mean 'n_runs'" in capsys.readouterr().err
