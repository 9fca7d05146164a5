"""The "Label and adapt" tutorial in a real browser: JupyterLab + Debian's Chromium through playwright.

Starts JupyterLab on 127.0.0.1 with a random token in a scratch folder holding a copy of the tutorial, runs all
cells, clicks 3 crop and 3 non-crop points on the map, presses Adapt and Suggest, clicks a "?" suggestion (it
must label that pixel), clicks off the image (a message for a person), presses Undo (the label goes, the message
clears) and Clear (labels, prediction and progress go), zooms out and checks the offline Natural Earth border
layer is drawn, and checks the page and the kernel agree. Every request to a host other than 127.0.0.1/localhost
is aborted and fails the test. Screenshots go to test-artifacts/ (label_and_adapt.png after Suggest,
label_and_adapt_zoomed_out.png after Clear and a zoom-out). With the shared data present it then appends a cell
with a map on the real Togo Earth Engine export (the session's default learner there: the Presto probe), labels
3 + 3 points, presses Adapt and checks the message names the one-off embedding (label_and_adapt_presto.png). The
server is stopped by its own process id.
"""
import contextlib, json, os, re, secrets, shutil, socket, subprocess, sys, time, urllib.request
from pathlib import Path
from urllib.parse import urlparse
import pytest

REPO = Path(__file__).resolve().parents[1]
TUTORIAL = REPO / 'nbs' / 'tutorials' / 'label_and_adapt.ipynb'
ARTIFACTS = REPO / 'test-artifacts'
CHROMIUM = Path('/usr/bin/chromium')
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
LOCAL_HOSTS = {'127.0.0.1', 'localhost'}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def write_lab_settings(folder: Path):
    "User settings for a quiet, fully rendered JupyterLab: no news/update checks, no notebook windowing."
    settings = {'@jupyterlab/apputils-extension/notification.jupyterlab-settings': {'fetchNews': 'false', 'checkForUpdates': False},
                '@jupyterlab/notebook-extension/tracker.jupyterlab-settings': {'windowingMode': 'none'}}
    for rel, value in settings.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(json.dumps(value))


def start_lab(root: Path, log_path: Path, port: int, token: str) -> subprocess.Popen:
    "Start JupyterLab serving `root`; return its process once /api/status answers."
    write_lab_settings(root / '.lab-settings')
    env = {k: v for k, v in os.environ.items() if k != 'MPLBACKEND'}
    env['PYTHONPATH'] = os.pathsep.join([str(REPO)] + [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p])
    cmd = [sys.executable, '-m', 'jupyter', 'lab', '--no-browser', '--ip=127.0.0.1', f'--port={port}',
           f'--ServerApp.token={token}', f'--ServerApp.root_dir={root}', '--LabApp.expose_app_in_browser=True',
           f'--LabApp.user_settings_dir={root / ".lab-settings"}', f'--LabApp.workspaces_dir={root / ".lab-workspaces"}']
    if hasattr(os, 'geteuid') and os.geteuid() == 0: cmd.append('--allow-root')
    proc = subprocess.Popen(cmd, stdout=open(log_path, 'w'), stderr=subprocess.STDOUT, env=env, cwd=root)
    deadline = time.time() + 45
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f'JupyterLab exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}')
        try:
            urllib.request.urlopen(f'http://127.0.0.1:{port}/api/status?token={token}', timeout=2)
            return proc
        except OSError:
            time.sleep(0.5)
    stop(proc)
    raise RuntimeError(f'JupyterLab did not answer in 45 s:\n{log_path.read_text()[-3000:]}')


def stop(proc: subprocess.Popen):
    "Stop the server we started, by its pid."
    if proc.poll() is None:
        proc.terminate()
        try: proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill(); proc.wait(timeout=10)


# JavaScript run in the page (JupyterLab exposes `window.jupyterapp` with --LabApp.expose_app_in_browser).
JS_PANEL = "(() => Array.from(window.jupyterapp.shell.widgets('main')).find(w => w.context && w.context.path.endsWith('.ipynb')))()"
JS_KERNEL_READY = f"""() => {{ if (!window.jupyterapp) return false; const p = {JS_PANEL};
  const k = p && p.sessionContext.session && p.sessionContext.session.kernel;
  return !!k && k.connectionStatus === 'connected' && k.status === 'idle'; }}"""
JS_ALL_RUN = f"""() => {{ const p = {JS_PANEL}; const k = p.sessionContext.session.kernel;
  const cells = p.content.widgets.filter(c => c.model.type === 'code');
  return k.status === 'idle' && cells.every(c => c.model.executionCount !== null); }}"""
JS_APPEND_RUN = f"""async (code) => {{ const p = {JS_PANEL}; const nb = p.content; const n = nb.model.cells.length;
  nb.model.sharedModel.insertCell(n, {{cell_type: 'code', source: code}});
  nb.activeCellIndex = n; await window.jupyterapp.commands.execute('notebook:run-cell'); return n; }}"""
JS_EXECUTE = f"""async (code) => {{ const p = {JS_PANEL}; const k = p.sessionContext.session.kernel;
  let out = ''; const f = k.requestExecute({{code, silent: false, store_history: false}});
  f.onIOPub = (m) => {{ if (m.header.msg_type === 'stream') out += m.content.text;
                        if (m.header.msg_type === 'error') out += 'ERROR ' + m.content.ename + ': ' + m.content.evalue; }};
  await f.done; return out; }}"""


def drive_presto(page, left, tif: Path, screenshot: Path) -> dict:
    "Append a cell with a map on the real export `tif` (the session's default learner: Presto), label 3 + 3, Adapt."
    page.evaluate(JS_APPEND_RUN, f"from pathlib import Path\nlabeler2 = MapLabeler(LabelingSession(Path({str(tif)!r})))\nlabeler2")
    page.wait_for_function("() => document.querySelectorAll('.agrinb-labeler .leaflet-container').length >= 2", timeout=left(60_000))
    ui = page.locator('.agrinb-labeler').nth(1)
    ui.locator('.leaflet-container').scroll_into_view_if_needed()
    raster = ui.locator('img.leaflet-image-layer').first
    raster.wait_for(state='visible'); page.wait_for_timeout(500)
    box = raster.bounding_box()
    for cls, pts in {'crop': [(0.3, 0.3), (0.5, 0.5), (0.6, 0.35)], 'non_crop': [(0.1, 0.95), (0.95, 0.9), (0.95, 0.1)]}.items():
        ui.get_by_role('button', name=cls, exact=True).click()
        for fx, fy in pts:
            page.mouse.click(box['x'] + fx * box['width'], box['y'] + fy * box['height']); page.wait_for_timeout(350)
    ui.get_by_role('button', name='Adapt', exact=True).click()
    page.wait_for_function("() => /adapted on/.test(document.querySelectorAll('.agrinb-labeler')[1].querySelector('.agrinb-message').innerText)",
                           timeout=left(60_000))
    out = {'message': ui.locator('.agrinb-message').inner_text(), 'overlays': ui.locator('img.leaflet-image-layer').count(),
           'bar': page.evaluate("() => document.querySelectorAll('.agrinb-labeler')[1].querySelector('.progress-bar').style.width"),
           'kernel': json.loads(page.evaluate(JS_EXECUTE, "import json; s = labeler2.session; print(json.dumps({'learner': "
                                "type(s.learner).__name__, 'n': len(s.labels), 'month': s.month, 'cached': s._emb is not None}))").strip().splitlines()[-1])}
    page.screenshot(path=str(screenshot), full_page=False)
    return out


def drive_tutorial(notebook: Path, tmp: Path, screenshot: Path, budget_s: float = 130, presto_tif: Path | None = None) -> dict:
    "Run `notebook` in JupyterLab + Chromium and label, adapt and suggest through the map; return what was seen."
    from playwright.sync_api import sync_playwright
    deadline = time.time() + budget_s
    def left(ms):  # each wait gets its own timeout, but all of them together stay within the budget
        remaining = (deadline - time.time()) * 1000
        if remaining <= 0: raise TimeoutError(f'the browser test ran past its {budget_s} s budget')
        return min(ms, remaining)
    root = tmp / 'lab'; root.mkdir()
    shutil.copy(notebook, root / notebook.name)
    port, token = free_port(), secrets.token_hex(16)
    proc = start_lab(root, tmp / 'jupyterlab.log', port, token)
    external, seen = [], {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={'width': 1400, 'height': 1100})
                page.set_default_timeout(30_000)

                def route(r):
                    u = urlparse(r.request.url)
                    if u.scheme in ('data', 'blob') or u.hostname in LOCAL_HOSTS: r.continue_()
                    else: external.append(r.request.url); r.abort()
                page.route('**/*', route)
                page.goto(f'http://127.0.0.1:{port}/lab/tree/{notebook.name}?token={token}')
                page.wait_for_function(JS_KERNEL_READY, timeout=left(90_000), polling=500)
                page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
                page.wait_for_selector('.agrinb-labeler .leaflet-container', timeout=left(150_000))
                page.wait_for_function(JS_ALL_RUN, timeout=left(60_000), polling=500)
                seen['errors'] = page.locator('[data-mime-type="application/vnd.jupyter.error"]').all_inner_texts()
                assert not seen['errors'], f'cells raised: {seen["errors"]}'

                ui = page.locator('.agrinb-labeler')
                ui.locator('.leaflet-container').scroll_into_view_if_needed()
                raster = ui.locator('img.leaflet-image-layer').first
                raster.wait_for(state='visible')
                page.wait_for_timeout(500)
                box = raster.bounding_box()
                points = {'crop': [(0.2, 0.2), (0.5, 0.3), (0.8, 0.2)], 'non_crop': [(0.2, 0.8), (0.5, 0.7), (0.8, 0.8)]}
                for cls, pts in points.items():
                    ui.get_by_role('button', name=cls, exact=True).click()
                    for fx, fy in pts:
                        page.mouse.click(box['x'] + fx * box['width'], box['y'] + fy * box['height'])
                        page.wait_for_timeout(350)
                count = ui.locator('.agrinb-count')
                page.wait_for_function("() => /\\b6 labels\\b/.test(document.querySelector('.agrinb-count').innerText)", timeout=left(20_000))
                seen['count_text'] = count.inner_text()

                page.evaluate("""() => { window.__bar = []; const b = document.querySelector('.agrinb-labeler .progress-bar');
                    new MutationObserver(() => window.__bar.push(b.style.width)).observe(b, {attributes: true, attributeFilter: ['style']}); }""")
                ui.get_by_role('button', name='Adapt', exact=True).click()
                page.wait_for_function("() => document.querySelectorAll('.agrinb-labeler img.leaflet-image-layer').length >= 2 "
                                       "&& /adapted on/.test(document.querySelector('.agrinb-message').innerText)", timeout=left(60_000))
                seen['message'] = ui.locator('.agrinb-message').inner_text()
                seen['bar_widths'] = page.evaluate("() => window.__bar")   # every width the bar took while adapting
                seen['overlays'] = ui.locator('img.leaflet-image-layer').count()
                seen['overlay_src'] = ui.locator('img.leaflet-image-layer').nth(1).get_attribute('src')[:22]
                seen['kernel'] = page.evaluate(JS_EXECUTE, "import json; s = labeler.session; print(json.dumps("
                                               "{'n': len(s.labels), 'counts': s.counts(), 'proba': s.proba is not None, "
                                               "'on_map': labeler.proba_layer in labeler.map.layers}))")

                ui.get_by_role('button', name='Suggest', exact=True).click()
                page.wait_for_function("() => document.querySelectorAll('.agrinb-labeler .agrinb-suggest').length > 0", timeout=left(30_000))
                page.wait_for_timeout(300)
                seen['suggest_markers'] = ui.locator('.agrinb-suggest').count()
                seen['n_suggest'] = page.evaluate(JS_EXECUTE, "print(len(labeler.session.suggestions))")
                seen['active_bg'] = page.evaluate("() => getComputedStyle(document.querySelector("
                                                  "'.agrinb-cls button.mod-active')).backgroundColor")
                seen['legend'] = ui.locator('.agrinb-legend').inner_text()
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=False)

                # a "?" takes the click and labels its pixel with the selected class (non_crop is still selected)
                ui.locator('.agrinb-suggest').first.click()
                page.wait_for_function("() => /\\b7 labels\\b/.test(document.querySelector('.agrinb-count').innerText)", timeout=left(20_000))
                seen['after_suggest_click'] = json.loads(page.evaluate(JS_EXECUTE, "import json; s = labeler.session; "
                    "print(json.dumps({'n': len(s.labels), 'last': s.labels.cls.iloc[-1], 'n_suggest': len(s.suggestions), "
                    "'markers': len(labeler.suggest_layer.layers)}))").strip().splitlines()[-1])
                seen['suggest_markers_after'] = ui.locator('.agrinb-suggest').count()

                # a click off the image is a message for a person; Undo takes the label back and clears the message
                box = raster.bounding_box()  # the page may have scrolled to show the marker
                page.mouse.click(box['x'] - 60, box['y'] + box['height'] / 2)
                page.wait_for_function("() => /outside the image/.test(document.querySelector('.agrinb-message').innerText)", timeout=left(20_000))
                seen['error_text'] = ui.locator('.agrinb-message').inner_text()
                ui.locator('button', has_text='Undo').click()
                page.wait_for_function("() => /undid the last label/.test(document.querySelector('.agrinb-message').innerText)", timeout=left(20_000))
                seen['after_undo'] = {'message': ui.locator('.agrinb-message').inner_text(), 'count': count.inner_text(),
                                      'overlays': ui.locator('img.leaflet-image-layer').count()}

                # Clear removes the labels, the prediction overlay and the progress
                ui.get_by_role('button', name='Clear', exact=True).click()
                page.wait_for_function("() => /\\b0 labels\\b/.test(document.querySelector('.agrinb-count').innerText) && "
                                       "document.querySelectorAll('.agrinb-labeler img.leaflet-image-layer').length === 1", timeout=left(20_000))
                page.wait_for_timeout(300)
                seen['after_clear'] = {'overlays': ui.locator('img.leaflet-image-layer').count(),
                                       'bar': page.evaluate("() => document.querySelector('.agrinb-labeler .progress-bar').style.width"),
                                       'markers': ui.locator('.agrinb-labeler .agrinb-suggest').count()}

                # zoomed out, the raster sits among Natural Earth borders, drawn with no network at all
                page.evaluate(JS_EXECUTE, "labeler.map.zoom = 7")
                page.wait_for_timeout(1200)
                seen['border_paths'] = page.evaluate("() => document.querySelectorAll('.agrinb-labeler .leaflet-overlay-pane path').length")
                seen['n_borders'] = int(page.evaluate(JS_EXECUTE, "print(len(labeler.border_layer.data['features']))").strip())
                seen['place'] = ui.locator('.agrinb-place').inner_text()
                page.screenshot(path=str(screenshot.with_name(screenshot.stem + '_zoomed_out.png')), full_page=False)
                if presto_tif is not None:  # the session's default on a real export: Presto, embedding on the first Adapt
                    seen['presto'] = drive_presto(page, left, presto_tif, screenshot.with_name(screenshot.stem + '_presto.png'))
            except Exception:  # keep a picture of what the page looked like when it failed
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(Exception): page.screenshot(path=str(screenshot.with_name(screenshot.stem + '_failure.png')))
                raise
            finally:
                browser.close()
    finally:
        stop(proc)
    seen['external'], seen['returncode'] = external, proc.returncode
    return seen


def test_label_and_adapt_in_browser(tmp_path):
    if not CHROMIUM.exists(): pytest.skip(f'{CHROMIUM} not found (CI installs it: apt-get install -y chromium)')
    pytest.importorskip('playwright.sync_api', reason='playwright is not installed')
    assert TUTORIAL.exists(), TUTORIAL
    from agrinb.meta.pretrained import pretrained_timl
    pretrained_timl(progress=False)  # train (first run only) and cache the tutorial's learner outside the browser budget
    togo = REPO.parent / 'shared' / 'data' / 'ee_exports' / '98-togo_2019-02-06_2020-02-01.tif'
    seen = drive_tutorial(TUTORIAL, tmp_path, ARTIFACTS / 'label_and_adapt.png', budget_s=170 if togo.exists() else 130,
                          presto_tif=togo if togo.exists() else None)  # without the shared data: the synthetic part only
    assert seen['external'] == [], f'requests to non-local hosts: {seen["external"]}'
    assert re.search(r'\b6 labels\b', seen['count_text']) and '3 crop, 3 non_crop' in seen['count_text'], seen['count_text']
    assert 'adapted on 6 labels' in seen['message'], seen['message']
    assert seen['overlays'] >= 2 and seen['overlay_src'].startswith('data:image/png'), seen
    between = {w for w in seen['bar_widths'] if w not in ('0%', '100%', '')}
    assert len(between) >= 3, seen['bar_widths']   # the bar moved step by step (it once sat at 5 % through the adaptation)
    kernel = json.loads(seen['kernel'].strip().splitlines()[-1])
    assert kernel == {'n': 6, 'counts': {'crop': 3, 'non_crop': 3}, 'proba': True, 'on_map': True}, kernel
    assert seen['suggest_markers'] == int(seen['n_suggest']) > 0, seen
    assert seen['active_bg'] == 'rgb(0, 114, 178)', seen['active_bg']  # the selected class (non_crop), in its label colour
    assert 'crop' in seen['legend'] and 'non_crop' in seen['legend'], seen['legend']
    assert seen['after_suggest_click'] == {'n': 7, 'last': 'non_crop', 'n_suggest': seen['suggest_markers'] - 1,
                                           'markers': seen['suggest_markers'] - 1}, seen['after_suggest_click']
    assert seen['suggest_markers_after'] == seen['suggest_markers'] - 1, seen
    assert 'outside the image' in seen['error_text'] and 'field' not in seen['error_text'], seen['error_text']
    assert 'outside' not in seen['after_undo']['message'] and re.search(r'\b6 labels\b', seen['after_undo']['count']), seen
    assert seen['after_undo']['overlays'] == 2, seen  # the prediction stays after undoing a label
    assert seen['after_clear'] == {'overlays': 1, 'bar': '0%', 'markers': 0}, seen['after_clear']
    assert seen['n_borders'] >= 5 and seen['border_paths'] >= seen['n_borders'], seen  # one path per country (+ the outline)
    assert 'Togo' in seen['place'], seen['place']
    assert (ARTIFACTS / 'label_and_adapt_zoomed_out.png').stat().st_size > 0
    assert (ARTIFACTS / 'label_and_adapt.png').stat().st_size > 0
    if togo.exists():
        pr = seen['presto']
        assert pr['kernel'] == {'learner': 'PrestoProbe', 'n': 6, 'month': 1, 'cached': True}, pr
        assert re.match(r'embedded 289 pixels with Presto in [\d.]+ s, adapted on 6 labels', pr['message']), pr['message']
        assert pr['overlays'] >= 2 and pr['bar'] == '100%', pr
    assert seen['returncode'] is not None, 'the JupyterLab server is still running'
