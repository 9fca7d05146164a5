"The project's own wiring: README in step with the index notebook, the CLI entry point and its error policy, CI calling the README's command (the wheel: tests/test_install.py)."
import os, subprocess, sys
import pytest
from pathlib import Path
ROOT = Path(__file__).resolve().parents[1]

def test_readme_in_step_with_index():
    r = subprocess.run([sys.executable, str(ROOT/'scripts'/'make_readme.py'), '--check'], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr

def test_readme_shows_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT/'README.md').read_text()
    assert 'pip install -e ".[dev]" && agrinb demo' in readme
    test_cmd = 'pip install -e ".[dev]" && ./scripts/test'
    assert test_cmd in readme
    assert test_cmd in (ROOT/'.ci'/'run').read_text()

def test_console_script_help():
    r = subprocess.run([sys.executable, '-m', 'agrinb.cli', '--help'], capture_output=True, text=True)
    assert r.returncode == 0 and 'demo' in r.stdout
    r = subprocess.run([sys.executable, '-m', 'agrinb.cli', 'nope'], capture_output=True, text=True)
    assert r.returncode == 2 and 'unknown command' in r.stderr

def _cli(*args, cwd=ROOT):
    env = {**os.environ, 'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': '1'}
    return subprocess.run([sys.executable, '-m', 'agrinb.cli', *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)

CASES = {  # command -> (arguments with a bad device, arguments with a missing config)
    'demo':  (['--quick', '--device', 'bogus'], ['--quick', '--config', 'missing.yaml']),
    'train': (['tiny', '--work-dir', 'w', '--device', 'bogus'], ['missing.yaml', '--work-dir', 'w']),
    'test':  (['tiny', 'm.pt', '--device', 'cuda:99'], ['missing.yaml', 'm.pt']),
    'infer': (['tiny', 'm.pt', 'out', '--device', 'bogus'], ['missing.yaml', 'm.pt', 'out']),
}

@pytest.mark.parametrize('cmd', list(CASES))
def test_console_commands_fail_with_one_line_and_status_2(cmd, tmp_path):
    "The real console command: a bad device or a missing config is one line on stderr, status 2, no traceback."
    for args, word in zip(CASES[cmd], ('device', 'missing.yaml')):
        r = _cli(cmd, *args, cwd=tmp_path)
        assert r.returncode == 2, (cmd, args, r.stderr[-2000:])
        assert 'Traceback' not in r.stderr and r.stderr.count('\n') == 1, r.stderr
        assert r.stderr.startswith(f'agrinb {cmd}: error: ') and word in r.stderr, r.stderr
    assert not any(tmp_path.iterdir())                          # nothing was written before the error
    r = _cli(cmd, *CASES[cmd][0], '--debug', cwd=tmp_path)      # --debug shows the traceback
    assert r.returncode != 0 and 'Traceback' in r.stderr and 'AgrinbError' in r.stderr
