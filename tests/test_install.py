"""A user's route in after `pip install agrinb`: what the wheel holds, the `app` extra, and the getting-started
commands (`tutorials`, `label`, `make-demo-data`) through real `python -m agrinb.cli` subprocesses."""
import json, os, shutil, subprocess, sys, zipfile
from pathlib import Path
import pytest
from agrinb.extras import hide_packages_code, APP_PACKAGES

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, 'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': '1'}

def _cli(*args, cwd=ROOT, env=ENV, pre=None, timeout=600):
    "Run `python -m agrinb.cli ARGS` (after the Python source `pre`, e.g. one that hides packages)."
    cmd = [sys.executable, '-m', 'agrinb.cli', *map(str, args)] if pre is None else \
          [sys.executable, '-c', pre + '\nimport sys, agrinb.cli; sys.argv[0] = "agrinb"; sys.exit(agrinb.cli.main())', *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)

@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    "A wheel built from a copy of the tree (setuptools writes build/ and *.egg-info into the tree it builds)."
    tmp = tmp_path_factory.mktemp('whl'); src = tmp / 'src'
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns('.git', 'build', '*.egg-info', '__pycache__', '_docs', '_proc',
                                                              'work_dirs', '.pytest_cache', 'test-artifacts'))
    r = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', str(tmp), str(src)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return next(tmp.glob('agrinb-*.whl'))

def _metadata(z):
    return z.read(next(n for n in z.namelist() if n.endswith('.dist-info/METADATA'))).decode()

def test_wheel_holds_license_configs_tutorials_and_alpha_status(wheel):
    z = zipfile.ZipFile(wheel); names = set(z.namelist())
    tutorials = {f'agrinb/tutorials/{p.name}' for p in (ROOT / 'nbs' / 'tutorials').glob('*.ipynb')}
    assert len(tutorials) >= 5 and tutorials <= names
    lic = [n for n in names if n.endswith('/LICENSE') and '.dist-info/' in n]
    assert lic and b'Apache License' in z.read(lic[0]) and b'2026 onwards, agrinb developers' in z.read(lic[0])
    assert z.read('agrinb/tutorials/label_and_adapt.ipynb') == (ROOT / 'nbs/tutorials/label_and_adapt.ipynb').read_bytes()
    assert {'agrinb/configs/tiny.yaml', 'agrinb/configs/agrifm.yaml', 'agrinb/extras.py'} <= names   # load_config('tiny') works
    meta = _metadata(z)
    assert 'Classifier: Development Status :: 3 - Alpha' in meta        # settings.ini status = 3
    assert 'License-File: LICENSE' in meta

def test_notebook_packages_are_the_app_extra_not_requirements(wheel):
    meta = _metadata(zipfile.ZipFile(wheel)).splitlines()
    hard = {l.split(': ', 1)[1].split(';')[0].strip() for l in meta if l.startswith('Requires-Dist') and 'extra ==' not in l}
    app = {l.split(': ', 1)[1].split(';')[0].strip() for l in meta if 'extra == "app"' in l}
    dev = {l.split(': ', 1)[1].split(';')[0].strip() for l in meta if 'extra == "dev"' in l}
    assert not hard & set(APP_PACKAGES) and 'torch>=2.1' in hard
    assert app == set(APP_PACKAGES) and app <= dev and {'pytest', 'playwright', 'nbdev==2.4.14'} <= dev

def test_without_the_app_packages_the_cli_works_and_the_map_names_the_extra(tmp_path):
    "A CLI-only install: the packages are hidden by a real import finder; agrinb imports, `agrinb label` says what to install."
    hide = hide_packages_code()
    r = _cli('--help', pre=hide)
    assert r.returncode == 0 and 'label' in r.stdout, r.stderr
    r = _cli('label', tmp_path, '--dry-run', pre=hide)
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and 'Traceback' not in r.stderr, r.stderr
    assert r.stderr.startswith('agrinb label: error: ') and 'pip install "agrinb[app]"' in r.stderr, r.stderr
    assert 'jupyterlab' in r.stderr and not any(tmp_path.iterdir())
    code = hide + 'from agrinb.extras import require_app\ntry: require_app("ipyleaflet", "ipywidgets", where="MapLabeler")\n' \
                  'except Exception as e: print(type(e).__name__, e)'
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=ENV)
    assert r.stdout.startswith('AgrinbError MapLabeler:') and 'ipyleaflet, ipywidgets not installed' in r.stdout, r.stdout + r.stderr

def test_tutorials_command_copies_the_notebooks(tmp_path):
    r = _cli('tutorials', tmp_path / 't')
    assert r.returncode == 0, r.stderr
    src = sorted((ROOT / 'nbs' / 'tutorials').glob('*.ipynb'))
    assert sorted(p.name for p in (tmp_path / 't').iterdir()) == [p.name for p in src]
    for p in src: assert (tmp_path / 't' / p.name).read_bytes() == p.read_bytes()
    assert r.stdout.count('copied ') == len(src) and 'agrinb label' in r.stdout
    r = _cli('tutorials', tmp_path / 't', 'label_and_adpt')
    assert r.returncode == 2 and "Did you mean 'label_and_adapt'" in r.stderr, r.stderr

def test_label_command_line_without_starting_a_server(tmp_path):
    r = _cli('label', tmp_path, '--port', 8123, '--no-browser', '--allow-root', '--dry-run')
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f'cd {tmp_path} && {sys.executable} -m jupyterlab label_and_adapt.ipynb --ServerApp.port=8123 --no-browser --allow-root'
    assert (tmp_path / 'label_and_adapt.ipynb').read_bytes() == (ROOT / 'nbs/tutorials/label_and_adapt.ipynb').read_bytes()
    r = _cli('label', '--help')
    assert r.returncode == 0 and 'JupyterLab' in r.stdout and '--dry-run' in r.stdout

def test_help_mentions_the_map_and_the_tutorials_and_describes_every_option():
    r = _cli('--help')
    assert r.returncode == 0
    for w in ('label', 'tutorials', 'make-demo-data', 'the map', 'agrinb[app]'): assert w in r.stdout, w
    for cmd, words in {'test': ['ckpt', '--split', 'MultiSourceMapper.pt'],
                       'infer': ['ckpt', 'out', '--split', '--tile', '--overlap', 'NAME_prob.tif', 'no CRS'],
                       'train': ['--no-resume', '--threads']}.items():
        h = _cli(cmd, '--help').stdout
        for w in words: assert w in h, (cmd, w)

def test_train_without_data_names_make_demo_data_and_the_two_meet(tmp_path):
    "`agrinb train tiny` in an empty folder says how to get data; after `agrinb make-demo-data` the same data root is found."
    r = _cli('train', 'tiny', '--work-dir', 'w', cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count('\n') == 1, r.stderr
    assert 'agrinb make-demo-data data/tiny_samples' in r.stderr and not (tmp_path / 'w').exists(), r.stderr
    r = _cli('make-demo-data', '--size', 64, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith('wrote 9 samples to data/tiny_samples'), r.stdout + r.stderr
    assert 'agrinb train tiny --work-dir' in r.stdout
    lists = {p.stem: p.read_text().split() for p in (tmp_path / 'data/tiny_samples/data_lists').glob('*.txt')}
    assert set(lists) == {'train', 'val', 'test'} and sum(map(len, lists.values())) == 9
    assert len(list((tmp_path / 'data/tiny_samples/h5_samples').glob('*.h5'))) == 9
    small = ['--set', 'train.epochs=1', '--set', 'model.depths=[1,1]', '--set', 'model.embed_dim=8', '--no-progress']
    r = _cli('train', 'tiny', '--work-dir', 'w', *small, cwd=tmp_path)
    assert r.returncode == 0 and 'best val mFscore' in r.stdout, r.stderr[-2000:]

def test_threads_are_set_once_by_every_command(tmp_path):
    "`--threads` reaches torch and wins over AGRINB_THREADS (the demo records its count); a bad value is one error line."
    out = tmp_path / 'd.json'   # (one thread: two threads on a busy 2-core machine made this run take over 10 minutes)
    r = _cli('demo', '--quick', '--no-progress', '--threads', 1, '--json', out, '--set', 'n_runs=1', '--set', 'meta_steps=2',
             '--set', 'pretrain_steps=2', '--set', 'proto_steps=2', '--set', 'n_samples=3000', '--set', 'shots=[5]',
             env={**ENV, 'AGRINB_THREADS': '2'})
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(out.read_text())['threads'] == 1 and '(1 CPU thread)' in r.stdout
    r = _cli('train', 'tiny', '--work-dir', 'w', cwd=tmp_path, env={**ENV, 'AGRINB_THREADS': 'lots'})
    assert r.returncode == 2 and 'AGRINB_THREADS' in r.stderr and r.stderr.count('\n') == 1, r.stderr

def test_fresh_venv_reaches_the_tutorials_and_the_map_command(wheel, tmp_path):
    "`pip install --no-deps <wheel>` into a fresh venv (system packages for the dependencies): the README's commands."
    venv = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--system-site-packages', str(venv)], check=True, timeout=300)
    py, agrinb = venv / 'bin' / 'python', venv / 'bin' / 'agrinb'
    r = subprocess.run([str(py), '-m', 'pip', 'install', '-q', '--no-deps', str(wheel)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'} | {'OMP_NUM_THREADS': '1'}
    where = subprocess.run([str(py), '-c', 'import agrinb; print(agrinb.__file__)'], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr      # the wheel's agrinb, not a checkout's
    r = subprocess.run([str(agrinb), 'tutorials', str(tmp_path / 't')], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0 and len(list((tmp_path / 't').glob('*.ipynb'))) >= 5, r.stdout + r.stderr
    r = subprocess.run([str(agrinb), 'label', str(tmp_path / 'm'), '--dry-run'], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0 and f'{py} -m jupyterlab label_and_adapt.ipynb' in r.stdout, r.stdout + r.stderr
    _label_serves_the_notebook(agrinb, tmp_path / 'served', env)

def _label_serves_the_notebook(agrinb, folder, env, timeout=120):
    "`agrinb label DIR` for real: JupyterLab starts and serves the label-and-adapt notebook and the lab page; stopped after."
    import signal, time, urllib.request
    from test_browser import free_port   # the browser test's (its module imports only the standard library and pytest)
    port, token = free_port(), 'agrinb-test'
    cmd = [str(agrinb), 'label', str(folder), '--port', str(port), '--no-browser', '--allow-root']
    p = subprocess.Popen(cmd, env={**env, 'JUPYTER_TOKEN': token}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, start_new_session=True)
    try:
        url, t0, doc = f'http://127.0.0.1:{port}', time.time(), None
        while time.time() - t0 < timeout and p.poll() is None:
            try:
                req = urllib.request.Request(f'{url}/api/contents/label_and_adapt.ipynb', headers={'Authorization': f'token {token}'})
                doc = json.loads(urllib.request.urlopen(req, timeout=5).read()); break
            except OSError: time.sleep(1)
        assert doc is not None, f'no JupyterLab on port {port} after {time.time() - t0:.0f} s (exit {p.poll()})'
        assert doc['type'] == 'notebook' and any('LabelingSession' in ''.join(c['source']) or 'MapLabeler' in ''.join(c['source'])
                                                 for c in doc['content']['cells'])
        page = urllib.request.urlopen(urllib.request.Request(f'{url}/lab', headers={'Authorization': f'token {token}'}), timeout=10)
        assert page.status == 200 and b'JupyterLab' in page.read()
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        try: p.wait(30)
        except subprocess.TimeoutExpired: os.killpg(p.pid, signal.SIGKILL); p.wait()
