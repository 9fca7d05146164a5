"Multi-source crop mapping (agrinb.data.h5maps, agrinb.models.swin3d, agrinb.mapping): bad input, CLI, resume, tiling, real GeoTIFF."
import json, os, signal, subprocess, sys, time
from pathlib import Path
import numpy as np
import pytest
import torch
import xarray as xr
import rioxarray  # noqa: F401
from agrinb.core import AgrinbError, save_checkpoint, load_checkpoint, config_names
from agrinb.data.h5maps import (toy_cube, coarsen_source, demo_samples, write_sample, write_samples, write_data_list,
                                read_sample, MappingDataset, open_stack, normalize)
from agrinb.models.swin3d import Swin3D, load_video_swin_weights
from agrinb.mapping import (load_config, build_model, train, evaluate_checkpoint, infer, predict_tiled, load_model, few_shot,
                            infer_cube)
from agrinb.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / 'shared' / 'data'
SMALL = {'model.depths': [1, 1], 'model.embed_dim': 8, 'train.warmup_steps': 2, 'train.batch_size': 4}

@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    "Samples from a toy cube and a tiny model trained a few epochs on them."
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp('map')
    cube = toy_cube((64, 64), n_bands=18, seed=0)
    demo_samples(root / 'samples', size=64, tile=32, stride=16, cube=cube)
    ov = {**SMALL, 'data.root': str(root / 'samples'), 'train.epochs': 4}
    res = train('tiny', root / 'run', progress=False, overrides=ov)
    return root, ov, res

def _sample(path, S2=(12, 18, 16, 16), Modis=(24, 4, 4, 4), label=(16, 16)):
    data = {}
    if S2: data['S2'] = np.zeros(S2, np.float32)
    if Modis: data['Modis'] = np.zeros(Modis, np.float32)
    write_sample(path, data, np.zeros(label, np.int64))
    return path

SRC = {'S2': 18, 'Modis': 4}

# ---- bad input ------------------------------------------------------------------------------------------------
def _root_with(tmp_path, **kw):
    (tmp_path / 'h5_samples').mkdir(parents=True, exist_ok=True)
    _sample(tmp_path / 'h5_samples' / 'a.h5', **kw)
    write_data_list(tmp_path, 'train', ['a'])
    return tmp_path

def test_missing_source(tmp_path):
    root = _root_with(tmp_path, Modis=None)
    with pytest.raises(AgrinbError, match=r"a\.h5.*'Modis'"): MappingDataset(root, 'train', SRC)

def test_wrong_rank(tmp_path):
    root = _root_with(tmp_path, S2=(18, 16, 16))
    with pytest.raises(AgrinbError, match=r"field 'S2': expected a 4-D dataset"): MappingDataset(root, 'train', SRC)

def test_wrong_band_count(tmp_path):
    root = _root_with(tmp_path, Modis=(24, 7, 4, 4))
    with pytest.raises(AgrinbError, match=r"field 'Modis': expected 4 bands.*got 7"): MappingDataset(root, 'train', SRC)

def test_label_of_another_size(tmp_path):
    root = _root_with(tmp_path, label=(15, 16))
    with pytest.raises(AgrinbError, match=r"field 'label': expected shape \(16, 16\)"): MappingDataset(root, 'train', SRC)

def test_data_list_names_missing_file(tmp_path):
    root = _root_with(tmp_path)
    write_data_list(root, 'val', ['a', 'ghost'])
    with pytest.raises(AgrinbError, match=r"val\.txt.*line 2.*'ghost'"): MappingDataset(root, 'val', SRC)

def test_unknown_config_key(tmp_path):
    p = tmp_path / 'c.yaml'; p.write_text('model:\n  embed_dims: 8\n')
    with pytest.raises(AgrinbError, match=r"c\.yaml.*model\.embed_dims.*Did you mean 'embed_dim'"): load_config(p)
    with pytest.raises(AgrinbError, match=r"Did you mean 'train'"): load_config({'trian': {}})
    p.write_text('config = {"train": {"bach_size": 2}}\n'); p = p.rename(tmp_path / 'c.py')
    with pytest.raises(AgrinbError, match=r"Did you mean 'batch_size'"): load_config(p)

def test_writer_rejects_misaligned_source(tmp_path):
    cube = toy_cube((32, 32), n_bands=4)
    bad = coarsen_source(cube, 4).isel(x=slice(0, 7))
    with pytest.raises(AgrinbError, match="Modis"): write_samples(tmp_path, {'S2': cube, 'Modis': bad}, tile=16)
    with pytest.raises(AgrinbError, match="dims"): write_samples(tmp_path, {'S2': cube.transpose('band', 'time', 'y', 'x')})

def test_configs_ship_once_as_package_data():
    "The shipped YAML files are the only copy: a name loads the package's file, and mapping.py embeds no config."
    assert {'tiny', 'agrifm'} <= set(config_names())
    for name in ('tiny', 'agrifm'):
        assert load_config(REPO / 'agrinb' / 'configs' / f'{name}.yaml') == load_config(name)
    assert load_config('tiny')['model']['embed_dim'] == 16 and load_config('agrifm')['model']['depths'] == [2, 2, 18, 2]
    src = (REPO / 'agrinb' / 'mapping.py').read_text()
    assert 'CONFIGS' not in src and 'embed_dim: 16' not in src and "'embed_dim': 16" not in src
    assert not list(REPO.glob('configs/*.y*ml'))                 # no second copy at the top of the repository

def test_config_mistakes_are_agrinb_errors(tmp_path):
    (tmp_path / 'bad.yaml').write_text('train: {epochs: 3\n')
    with pytest.raises(AgrinbError, match=r"bad\.yaml: field 'YAML'"): load_config(tmp_path / 'bad.yaml')
    with pytest.raises(AgrinbError, match=r"train\.epochs.*a whole number"): load_config('tiny', {'train.epochs': 'ten'})
    with pytest.raises(AgrinbError, match=r"train\.lr.*a number"): load_config({'train': {'lr': [1]}})
    with pytest.raises(AgrinbError, match=r"no such file"): load_config(tmp_path / 'missing.yaml')

# ---- data ------------------------------------------------------------------------------------------------------
def test_writer_reads_geotiff_stacks(tmp_path):
    cube = toy_cube((32, 32), n_bands=3, n_time=4)
    flat = xr.DataArray(cube.values.reshape(12, 32, 32), dims=('band', 'y', 'x'), coords=dict(y=cube.y, x=cube.x))
    flat.rio.write_crs('EPSG:4326').rio.to_raster(tmp_path / 's2.tif')
    lists = write_samples(tmp_path / 'out', {'S2': tmp_path / 's2.tif'}, label=cube.is_crop.values.astype(int),
                          tile=16, n_time={'S2': 4})
    name = lists['train'][0]; y0, x0 = map(int, name.split('_')[1:])
    data, lab = read_sample(tmp_path / 'out' / 'h5_samples' / f'{name}.h5')
    np.testing.assert_allclose(data['S2'], cube.values[:, :, y0:y0 + 16, x0:x0 + 16], rtol=1e-6)

def test_real_ee_export_is_a_stack():
    tif = DATA / 'ee_exports' / '98-togo_2019-02-06_2020-02-01.tif'
    if not tif.exists(): pytest.skip('real Earth Engine export not in ../shared/data')
    with pytest.raises(AgrinbError, match='multiple of n_time=12'): open_stack(tif, 12)
    cube = open_stack(tif, 1)  # 12 x 17 dynamic bands + elevation + slope: one 'frame' of 206 bands
    assert cube.shape == (1, 206, 17, 17) and cube.rio.crs.to_epsg() == 4326

# ---- model -----------------------------------------------------------------------------------------------------
def test_video_swin_key_map_rejects_unadaptable_shapes():
    enc = Swin3D(in_chans=3, num_frames=8, patch_size=(2, 4, 4), embed_dim=8, depths=(2, 2), num_heads=(2, 2), window_size=(2, 3, 3))
    sd = {f'backbone.{k}': v for k, v in enc.state_dict().items()}
    sd['backbone.layers.0.blocks.0.mlp.fc1.weight'] = torch.zeros(5, 8)
    with pytest.raises(AgrinbError, match='mlp.fc1.weight'): load_video_swin_weights(enc, sd)

def test_shifted_windows_mix_across_window_borders():
    "Two stages of blocks: a pixel's features depend on pixels beyond its first window (shifted windows connect them)."
    torch.manual_seed(0)
    enc = Swin3D(in_chans=2, num_frames=4, patch_size=(2, 1, 1), embed_dim=8, depths=(2,), num_heads=(2,), window_size=(2, 4, 4)).eval()
    x = torch.randn(1, 4, 2, 8, 8); y = x.clone(); y[..., 4, 4] += 5  # token (4, 4): another window than (3, 3)
    with torch.no_grad(): a, b = enc(x)[0], enc(y)[0]
    assert (a[..., 3, 3] - b[..., 3, 3]).abs().max() > 1e-4   # reached through the shifted window
    assert torch.allclose(a[..., 0, 0], b[..., 0, 0], atol=1e-6)  # far pixel untouched

# ---- train / test / infer ----------------------------------------------------------------------------------------
def test_train_history_and_best_checkpoint(trained):
    root, ov, res = trained
    hist = json.loads((root / 'run' / 'history.json').read_text())
    assert [h['epoch'] for h in hist] == [1, 2, 3, 4]
    assert res['best_mFscore'] == max(h['val_mFscore'] for h in hist)
    assert res['best_checkpoint'] == str(root / 'run' / 'MultiSourceMapper.pt')
    assert res['checkpoint'] == str(root / 'run' / 'MultiSourceMapper-train.pt')
    model, cfg, stats = load_model(res['best_checkpoint'])
    assert cfg['data']['root'] == ov['data.root'] and set(stats) == {'S2', 'Modis'}
    assert sorted(f.name for f in (root / 'run').iterdir()) == ['MultiSourceMapper-train.pt', 'MultiSourceMapper.pt', 'history.json']

def _copy_samples(root, dst, label=None, val=None):
    "A copy of the trained fixture's samples, every label set to `label` and the val list replaced by `val` (when given)."
    import shutil, h5py
    shutil.copytree(root / 'samples', dst)
    if label is not None:
        for p in (dst / 'h5_samples').glob('*.h5'):
            with h5py.File(p, 'r+') as h: h['label'][...] = label
    if val is not None: write_data_list(dst, 'val', val)
    return dst

@pytest.mark.parametrize('label,val,match', [(5, None, r"h5_samples/sample_\w+\.h5: field 'label': expected classes 0\.\.1"),
                                             (-1, None, r"train\.txt: field 'samples'.*0 labelled pixels"),
                                             (None, [], r"val\.txt: field 'samples'.*got 0 sample\(s\)")])
def test_train_refuses_unusable_labels_before_training(trained, tmp_path, label, val, match):
    "Labels >= num_classes, every pixel ignored (a NaN loss) and an empty validation split end before step 1."
    root, ov, _ = trained
    d = _copy_samples(root, tmp_path / 's', label, val)
    with pytest.raises(AgrinbError, match=match): train('tiny', tmp_path / 'run', progress=False, overrides={**ov, 'data.root': str(d)})
    assert not (tmp_path / 'run' / 'MultiSourceMapper-train.pt').exists()

def test_a_config_must_describe_the_checkpoint(trained):
    "A 2-class checkpoint is not scored as 3 classes, nor with another model section."
    root, ov, res = trained
    with pytest.raises(AgrinbError, match=r"'data\.num_classes'.*\(2, 3\)"):
        evaluate_checkpoint('tiny', res['best_checkpoint'], progress=False, overrides={**ov, 'data.num_classes': 3})
    with pytest.raises(AgrinbError, match=r"'model\.embed_dim'"):
        evaluate_checkpoint('tiny', res['best_checkpoint'], progress=False, overrides={**ov, 'model.embed_dim': 16})
    assert evaluate_checkpoint('tiny', res['best_checkpoint'], progress=False, overrides=ov)['samples'] > 0

def _train_code(root, work, ov):
    return f"from agrinb.mapping import train; train('tiny', {str(work)!r}, device='cpu', progress=False, overrides={ov!r})"

def test_killed_training_resumes_bit_identically(trained, tmp_path):
    "SIGKILL a training process after its first checkpoint, resume it: the weights equal an uninterrupted run's."
    root, ov, res = trained
    ov = {**ov, 'train.epochs': 6}
    full = train('tiny', tmp_path / 'full', progress=False, overrides=ov)
    env = {**os.environ, 'PYTHONPATH': str(REPO), 'OMP_NUM_THREADS': '1'}
    proc = subprocess.Popen([sys.executable, '-c', _train_code(root, tmp_path / 'killed', ov)], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ck = tmp_path / 'killed' / 'MultiSourceMapper-train.pt'
    t0 = time.time()
    while not ck.exists() and proc.poll() is None and time.time() - t0 < 300: time.sleep(0.02)
    proc.send_signal(signal.SIGKILL); proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()[-2000:]
    done = load_checkpoint(ck)['meta']['step']
    assert 0 < done < full['history'][-1]['step']               # killed part-way
    resumed = train('tiny', tmp_path / 'killed', progress=False, overrides=ov)
    a = load_checkpoint(full['checkpoint'])['state']['fit']; b = load_checkpoint(resumed['checkpoint'])['state']['fit']
    assert a['model'].keys() == b['model'].keys() and all(torch.equal(a['model'][k], b['model'][k]) for k in a['model'])
    assert [h['loss'] for h in resumed['history']] == [h['loss'] for h in full['history']]
    assert resumed['best_mFscore'] == full['best_mFscore']
    with pytest.raises(AgrinbError, match='settings of the run'):
        train('tiny', tmp_path / 'killed', progress=False, overrides={**ov, 'train.epochs': 7})

def _cli(*args):
    env = {**os.environ, 'PYTHONPATH': str(REPO), 'OMP_NUM_THREADS': '1'}
    return subprocess.run([sys.executable, '-m', 'agrinb.cli', *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=600)

def test_cli_entry_points_in_a_subprocess(trained, tmp_path):
    root, ov, res = trained
    sets = sum([['--set', f'{k}={json.dumps(v)}'] for k, v in {**ov, 'train.epochs': 1}.items()], [])
    r = _cli('train', 'tiny', '--work-dir', tmp_path / 'w', '--no-progress', *sets)
    assert r.returncode == 0, r.stderr
    assert 'best val mFscore' in r.stdout and (tmp_path / 'w' / 'MultiSourceMapper.pt').exists()
    r = _cli('test', 'tiny', tmp_path / 'w' / 'MultiSourceMapper.pt', '--json', tmp_path / 'm.json', '--no-progress', *sets)
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / 'm.json').read_text())
    assert m['split'] == 'test' and len(m['IoU']) == 2 and 0 <= m['mIoU'] <= 1 and 'mIoU' in r.stdout.replace('mean', 'mIoU')
    r = _cli('train', 'tiny', '--work-dir', tmp_path / 'x', '--set', 'modle.depths=[1]')
    assert r.returncode == 2 and "Did you mean 'model'" in r.stderr and 'Traceback' not in r.stderr
    assert r.stderr.startswith('agrinb train: error: ') and r.stderr.count('\n') == 1

def test_test_metrics_match_a_manual_count(trained):
    root, ov, res = trained
    m = evaluate_checkpoint('tiny', res['best_checkpoint'], overrides=ov, progress=False)
    model, cfg, stats = load_model(res['best_checkpoint'])
    ds = MappingDataset(ov['data.root'], 'test', {'S2': 18, 'Modis': 4}, stats)
    tp = fp = fn = 0
    with torch.no_grad():
        for it in ds:
            p = model({k: v[None] for k, v in it['data'].items()}).argmax(1)[0]
            y = it['label']; tp += int(((p == 1) & (y == 1)).sum()); fp += int(((p == 1) & (y == 0)).sum()); fn += int(((p == 0) & (y == 1)).sum())
    assert m['IoU'][1] == pytest.approx(tp / (tp + fp + fn))

def test_infer_cli_writes_georeferenced_maps(trained, tmp_path):
    root, ov, res = trained
    cube = toy_cube((48, 48), n_bands=18, seed=9, origin=(9.5, 0.7))
    modis = coarsen_source(cube, 4, bands=[f'b{i}' for i in range(4)], n_time=24)
    for name, c in {'S2': cube, 'Modis': modis}.items():
        xr.DataArray(c.values.reshape(-1, *c.shape[2:]), dims=('band', 'y', 'x'), coords=dict(y=c.y, x=c.x)) \
          .rio.write_crs('EPSG:4326').rio.to_raster(tmp_path / f'{name}.tif')
    sets = sum([['--set', f'{k}={json.dumps(v)}'] for k, v in ov.items()], [])
    rc = cli_main(['infer', 'tiny', res['best_checkpoint'], str(tmp_path / 'out'), '--input', f"S2={tmp_path / 'S2.tif'}",
                     '--input', f"Modis={tmp_path / 'Modis.tif'}", '--tile', '32', '--overlap', '8', '--no-progress'] + sets)
    assert rc == 0
    prob = rioxarray.open_rasterio(tmp_path / 'out' / 'map_prob.tif'); cls = rioxarray.open_rasterio(tmp_path / 'out' / 'map_class.tif')
    assert prob.shape == (2, 48, 48) and prob.rio.crs.to_epsg() == 4326
    np.testing.assert_allclose(prob.rio.transform(), cube.rio.transform(), atol=1e-12)
    np.testing.assert_array_equal(cls.values[0], prob.values.argmax(0))
    assert (tmp_path / 'out' / 'map_class.png').stat().st_size > 0
    assert cli_main(['infer', 'tiny', res['best_checkpoint'], str(tmp_path / 'o2'), '--input', f"S2={tmp_path / 'S2.tif'}"] + sets) == 2
    r = _cli('infer', 'tiny', res['best_checkpoint'], tmp_path / 'o3', '--input', f"S2={tmp_path / 'S2.tif'}",
             '--input', f"Modis={tmp_path / 'nope.tif'}", *sets)            # a missing input file: one line, status 2
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and 'nope.tif' in r.stderr and 'no such file' in r.stderr

def test_infer_on_real_togo_export(tmp_path):
    "The real 17 x 17 Earth Engine export in Togo: maps keep its georeference (untrained model, 12 x 17 bands)."
    tif = DATA / 'ee_exports' / '98-togo_2019-02-06_2020-02-01.tif'
    if not tif.exists(): pytest.skip('real Earth Engine export not in ../shared/data')
    da = rioxarray.open_rasterio(tif)
    xr.DataArray(da.values[:204], dims=('band', 'y', 'x'), coords=dict(y=da.y, x=da.x)).rio.write_crs(da.rio.crs) \
      .rio.write_transform(da.rio.transform()).rio.to_raster(tmp_path / 'togo.tif')
    cfg = load_config({'data': {'sources': {'S2': {'bands': 17, 'frames': 12}}}, 'model': {'patch_size': [2, 2, 2], 'embed_dim': 8,
                       'depths': [1, 1], 'num_heads': [1, 1], 'window_size': [2, 4, 4], 'neck_dim': 8}})
    cube = open_stack(tmp_path / 'togo.tif', 12)
    v = cube.values.astype(np.float64)
    stats = {'S2': {'mean': np.nanmean(v, (0, 2, 3)).tolist(), 'std': (np.nanstd(v, (0, 2, 3)) + 1e-6).tolist()}}
    save_checkpoint(tmp_path / 'm.pth', 'MultiSourceMapper', {'model': build_model(cfg).state_dict()}, config=cfg, stats=stats)
    paths = infer(cfg, tmp_path / 'm.pth', tmp_path / 'out', inputs={'S2': tmp_path / 'togo.tif'}, tile=16, overlap=4, progress=False)
    out = rioxarray.open_rasterio(paths['prob'])
    assert out.shape == (2, 17, 17) and out.rio.crs == da.rio.crs
    np.testing.assert_allclose(out.rio.transform(), da.rio.transform(), atol=1e-12)
    np.testing.assert_allclose(out.values.sum(0), 1, atol=1e-5)

# ---- tiling ---------------------------------------------------------------------------------------------------------
def test_tiled_equals_untiled_when_one_tile_covers_the_cube(trained):
    root, ov, res = trained
    model, cfg, stats = load_model(res['best_checkpoint'])
    cube = toy_cube((32, 32), n_bands=18, seed=4)
    srcs = {'S2': cube, 'Modis': coarsen_source(cube, 4, bands=[f'b{i}' for i in range(4)], n_time=24)}
    p = infer_cube(model, cfg, stats, srcs, tile=32, overlap=8, progress=False).values
    x = {s: normalize({s: c.values}, stats)[s][None] for s, c in srcs.items()}
    with torch.no_grad(): ref = torch.softmax(model(x), 1)[0].numpy()
    np.testing.assert_allclose(p, ref, atol=1e-5)

def test_tiled_swin_has_no_seams(trained):
    "Overlap blending: the tiled map stays close to the untiled one, and no jump appears at tile borders."
    root, ov, res = trained
    model, cfg, stats = load_model(res['best_checkpoint'])
    cube = toy_cube((64, 64), n_bands=18, seed=11)
    srcs = {'S2': cube, 'Modis': coarsen_source(cube, 4, bands=[f'b{i}' for i in range(4)], n_time=24)}
    full = infer_cube(model, cfg, stats, srcs, tile=64, overlap=0, progress=False).values[1]
    blend = infer_cube(model, cfg, stats, srcs, tile=32, overlap=16, progress=False).values[1]
    hard = infer_cube(model, cfg, stats, srcs, tile=32, overlap=0, progress=False).values[1]  # abutting tiles, seams at 32
    err_blend, err_hard = np.abs(blend - full), np.abs(hard - full)
    assert err_blend.mean() <= err_hard.mean() + 1e-6
    # jumps across the tile border (column 31 -> 32) are no larger than jumps elsewhere in the blended map
    jump = np.abs(np.diff(blend, axis=1))
    assert jump[:, 31].mean() <= np.quantile(jump.mean(0), 0.9) + 1e-6

def test_few_shot_finetune_and_scratch_run(trained, tmp_path):
    root, ov, res = trained
    cube = toy_cube((64, 64), n_bands=18, seed=21, peak=4.0)
    demo_samples(tmp_path / 'new', size=64, tile=32, stride=16, cube=cube)
    new = {**ov, 'data.root': str(tmp_path / 'new')}
    ft = few_shot('tiny', res['best_checkpoint'], n_pixels=20, steps=3, progress=False, overrides=new)
    sc = few_shot('tiny', None, n_pixels=20, steps=3, progress=False, overrides=new)
    assert ft['labelled_pixels'] == sc['labelled_pixels'] == 20
    assert ft['metrics']['pixels'] == sc['metrics']['pixels'] > 0

@pytest.mark.filterwarnings('error::rasterio.errors.NotGeoreferencedWarning')
def test_infer_without_inputs_maps_the_test_split(trained, tmp_path, capfd):
    "H5 samples carry no georeference: one warning line of agrinb's own, no rasterio warning (an error here)."
    root, ov, res = trained
    w = infer('tiny', res['best_checkpoint'], tmp_path / 'maps', overrides=ov, progress=False)
    err = capfd.readouterr().err
    assert err.count('\n') == 1 and err.startswith('agrinb: warning: ') and 'carry no georeference' in err, err
    names = (Path(ov['data.root']) / 'data_lists' / 'test.txt').read_text().split()
    assert sorted(w) == sorted(names)
    p = rioxarray.open_rasterio(w[names[0]]['prob'])
    assert p.shape == (2, 32, 32) and w[names[0]]['class_png'].exists()
    assert p.rio.crs is None

def test_infer_cli_on_samples_has_no_rasterio_warning(trained, tmp_path):
    "`agrinb infer` without --input in a subprocess where NotGeoreferencedWarning is an error; --split picks the samples."
    root, ov, res = trained
    sets = sum([['--set', f'{k}={json.dumps(v)}'] for k, v in ov.items()], [])
    code = ('import sys, warnings, rasterio.errors; warnings.simplefilter("error", rasterio.errors.NotGeoreferencedWarning)\n'
            'import agrinb.cli; sys.exit(agrinb.cli.main())')
    env = {**os.environ, 'PYTHONPATH': str(REPO), 'OMP_NUM_THREADS': '1'}
    r = subprocess.run([sys.executable, '-c', code, 'infer', 'tiny', res['best_checkpoint'], str(tmp_path / 'maps'), '--split', 'val',
                        '--no-progress', *sets], capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    names = (Path(ov['data.root']) / 'data_lists' / 'val.txt').read_text().split()
    assert r.stdout.strip() == f"wrote {len(names)} map(s) to {tmp_path / 'maps'}"
    assert sorted(p.name for p in (tmp_path / 'maps').glob('*_prob.tif')) == sorted(f'{n}_prob.tif' for n in names)
    assert [l for l in r.stderr.splitlines() if 'arning' in l] == [r.stderr.strip()] and 'no georeference' in r.stderr, r.stderr


# ---- streamed inference (agrinb.predict) ----------------------------------------------------------------------
def _old_predict_tiled(predict, sources, tile, overlap, batch_size):
    "The in-memory tiling `infer` used before it streamed through `predict_raster`, kept verbatim as the reference."
    import torch.nn.functional as F
    def ramp(n):
        i = np.arange(n); d = np.minimum(i, n - 1 - i) + 1
        return np.clip(d / (overlap + 1), 1e-3, 1.0) if overlap > 0 else np.ones(n)
    def starts(n, stride):
        s = list(range(0, max(n - tile, 0) + 1, stride))
        return s + [n - tile] if s[-1] != n - tile else s
    ref = max(sources, key=lambda s: sources[s].shape[-1]); H, W = sources[ref].shape[-2:]
    scale = {s: H // v.shape[-2] for s, v in sources.items()}
    k = int(np.lcm.reduce(list(scale.values()))); stride = tile - overlap
    Hp, Wp = max(H, tile), max(W, tile); Hp, Wp = Hp + (-Hp) % k, Wp + (-Wp) % k
    src = {s: torch.as_tensor(np.asarray(v, dtype=np.float32)) for s, v in sources.items()}
    if (Hp, Wp) != (H, W):
        src = {s: F.pad(v, (0, (Wp - W) // scale[s], 0, (Hp - H) // scale[s]), mode='replicate') for s, v in src.items()}
    win = torch.as_tensor(np.outer(ramp(tile), ramp(tile)), dtype=torch.float32)
    acc, wsum = None, torch.zeros(Hp, Wp)
    pos = [(y, x) for y in starts(Hp, stride) for x in starts(Wp, stride)]
    for i in range(0, len(pos), batch_size):
        chunk = pos[i:i + batch_size]
        batch = {s: torch.stack([v[..., y // scale[s]:(y + tile) // scale[s], x // scale[s]:(x + tile) // scale[s]] for y, x in chunk])
                 for s, v in src.items()}
        with torch.no_grad(): p = predict(batch).float().cpu()
        if acc is None: acc = torch.zeros(p.shape[1], Hp, Wp)
        for (y, x), pi in zip(chunk, p):
            acc[:, y:y + tile, x:x + tile] += pi * win; wsum[y:y + tile, x:x + tile] += win
    return (acc / wsum)[:, :H, :W].numpy()

def _stack_tif(c, path, crs='EPSG:4326'):
    xr.DataArray(c.values.reshape(-1, *c.shape[2:]), dims=('band', 'y', 'x'), coords=dict(y=c.y, x=c.x)).rio.write_crs(crs).rio.to_raster(path)
    return path

def test_streamed_infer_is_bit_identical_to_the_in_memory_tiling(trained, tmp_path):
    """`infer` on GeoTIFF stacks (opened lazily, 32-px blocks, 24-px tiles overlapping by 8 that straddle the blocks,
    an edge that needs padding) writes, bit for bit, the map of the old whole-cube tiling loop."""
    root, ov, res = trained
    model, cfg, stats = load_model(res['best_checkpoint'])
    cube = toy_cube((76, 76), n_bands=18, seed=5)
    modis = coarsen_source(cube, 4, bands=[f'b{i}' for i in range(4)], n_time=24)
    inputs = {'S2': _stack_tif(cube, tmp_path / 'S2.tif'), 'Modis': _stack_tif(modis, tmp_path / 'Modis.tif')}
    paths = infer(cfg, res['best_checkpoint'], tmp_path / 'out', inputs=inputs, tile=24, overlap=8, chunk=32, progress=False)
    data = {s: normalize({s: c.values}, stats)[s].numpy() for s, c in {'S2': cube, 'Modis': modis}.items()}
    ref = _old_predict_tiled(lambda b: torch.softmax(model(b), 1), data, 24, 8, cfg['infer']['batch_size'])
    prob = rioxarray.open_rasterio(paths['prob'])
    assert prob.shape == (2, 76, 76) and prob.rio.crs.to_epsg() == 4326
    np.testing.assert_array_equal(prob.values, ref)
    np.testing.assert_array_equal(rioxarray.open_rasterio(paths['class']).values[0], ref.argmax(0))
    assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == ['map_class.png', 'map_class.tif', 'map_prob.png', 'map_prob.tif']

def test_infer_cli_refuses_bad_overlap_and_mismatched_sources(trained, tmp_path, capsys):
    "Checked at the boundary, before the model runs: one line naming the option or the files, exit status 2, no maps."
    root, ov, res = trained
    sets = sum([['--set', f'{k}={json.dumps(v)}'] for k, v in ov.items()], [])
    cube = toy_cube((32, 32), n_bands=18, seed=2)
    def modis(c): return coarsen_source(c, 4, bands=[f'b{i}' for i in range(4)], n_time=24)
    s2 = _stack_tif(cube, tmp_path / 'S2.tif')
    far = _stack_tif(modis(toy_cube((32, 32), n_bands=18, seed=2, origin=(8.0, 50.0))), tmp_path / 'far.tif')   # 49 deg east
    utm = _stack_tif(modis(cube), tmp_path / 'utm.tif', crs='EPSG:32631')
    near = _stack_tif(modis(cube), tmp_path / 'Modis.tif')
    cases = [(['--overlap', '-4'], near, "'overlap'"), (['--tile', '16', '--overlap', '16'], near, "'overlap'"),
             ([], far, 'far.tif'), ([], utm, 'utm.tif')]
    for extra, m, needle in cases:
        out = tmp_path / f'o{len(extra)}{m.stem}'
        rc = cli_main(['infer', 'tiny', str(res['best_checkpoint']), str(out), '--input', f'S2={s2}', '--input', f'Modis={m}',
                       '--no-progress', *extra, *sets])
        err = capsys.readouterr().err
        assert rc == 2 and err.count('\n') == 1 and needle in err, (extra, m, err)
        assert not out.exists() or not any(out.iterdir())
    assert 'S2.tif' in err and "field 'crs'" in err

def test_streamed_infer_on_a_distributed_client(trained, tmp_path):
    "The same maps through a dask.distributed Client (threads of one local worker) as on the threaded scheduler."
    distributed = pytest.importorskip('distributed')
    root, ov, res = trained
    cube = toy_cube((40, 40), n_bands=18, seed=6)
    srcs = {'S2': cube, 'Modis': coarsen_source(cube, 4, bands=[f'b{i}' for i in range(4)], n_time=24)}
    a = infer('tiny', res['best_checkpoint'], tmp_path / 'a', inputs=srcs, tile=24, overlap=8, chunk=16, overrides=ov, progress=False)
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as c:
        b = infer('tiny', res['best_checkpoint'], tmp_path / 'b', inputs=srcs, tile=24, overlap=8, chunk=16, overrides=ov,
                  progress=False, client=c)
    for k in ('prob', 'class'):
        np.testing.assert_array_equal(rioxarray.open_rasterio(a[k]).values, rioxarray.open_rasterio(b[k]).values)
