"The project's own wiring: README in step with the index notebook, the CLI entry point, CI calling the README's command."
import subprocess, sys
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
