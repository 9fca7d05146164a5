"""LabelingSession and MapLabeler: bad input gets clear messages, exports are atomic, real GeoTIFFs work."""
import subprocess, sys
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import rioxarray  # noqa: F401  (registers .rio)
import geopandas as gpd
from sklearn.metrics import roc_auc_score
from agrinb.core import AgrinbError
from agrinb.data.pixels import CROPHARVEST_BANDS
from agrinb.data.synthetic import make_datacube
from agrinb.data.cropharvest import RAW_DYNAMIC_BANDS, RAW_STATIC_BANDS
from agrinb.meta.baselines import RandomForest
from agrinb.app import LabelingSession, MapLabeler
from agrinb.meta.pretrained import pretrained_timl, learner_stats
from agrinb.data.raster import check_raster

SHARED = Path(__file__).resolve().parents[1].parent / 'shared' / 'data'
TOGO_TIF = SHARED / 'ee_exports' / '98-togo_2019-02-06_2020-02-01.tif'


@pytest.fixture(scope='module')
def cube():
    return make_datacube('Togo', size=(40, 40), seed=1)


def forest_session(raster, **kw):
    return LabelingSession(raster, learner=RandomForest(seed=0), stats='raster', progress=False, **kw)


def label_truth(s, cube, k, rng):
    "k labels per class at random pixels, classes from the cube's truth."
    truth = cube.is_crop.values
    for cls, mask in (('crop', truth), ('non_crop', ~truth)):
        rows, cols = np.nonzero(mask)
        for i in rng.choice(len(rows), k, replace=False): s.add_label(float(cube.y[rows[i]]), float(cube.x[cols[i]]), cls)


def raw_tif(path, crs='EPSG:4326', H=6, W=5, seed=0, y0=8.5, x0=1.0, step=1e-4):
    "A small raw Earth Engine export (206 bands) with or without a CRS."
    rng = np.random.default_rng(seed)
    names = [f'{b}_{t}' if t else b for t in range(12) for b in RAW_DYNAMIC_BANDS] + RAW_STATIC_BANDS
    v = rng.uniform(0.01, 0.5, (len(names), H, W)).astype(np.float32)
    da = xr.DataArray(v, dims=('band', 'y', 'x'), coords={'band': np.arange(1, len(names) + 1),
                      'y': y0 - np.arange(H) * step, 'x': x0 + np.arange(W) * step})
    if crs: da = da.rio.write_crs(crs)
    da.rio.to_raster(path)
    return path


# ---- bad input -------------------------------------------------------------------------------------------------

def test_geotiff_without_crs(tmp_path):
    path = raw_tif(tmp_path / 'nocrs.tif', crs=None)
    with pytest.raises(AgrinbError, match=r"nocrs.tif: field 'crs'.*rio.write_crs"):
        forest_session(path)
    forest_session(raw_tif(tmp_path / 'ok.tif'))  # the same file with a CRS is fine


def test_projected_raster(cube, tmp_path):
    "A raster in UTM metres: pixels get lat/lon from its CRS, labels in degrees land on them, maps keep the CRS."
    from pyproj import Transformer
    to_ll = Transformer.from_crs('EPSG:32631', 'EPSG:4326', always_xy=True)
    s = forest_session(raw_tif(tmp_path / 'utm.tif', crs='EPSG:32631', y0=900005., x0=300005., step=10.))
    lon, lat = to_ll.transform(300005. + 10 * 3, 900005. - 10 * 2)
    np.testing.assert_allclose([s.raster.lon.values[2, 3], s.raster.lat.values[2, 3]], [lon, lat], atol=1e-9)
    W, S, E, N = s.bounds
    assert W < s.raster.lon.values.min() and s.raster.lat.values.max() < N and 1 < W < 1.4 and 8 < S < 8.3
    # the synthetic cube on a 20 m UTM grid: labels by lat/lon, adapt, predict, suggest, export
    H, Wd = cube.sizes['y'], cube.sizes['x']
    utm = cube.assign_coords(y=900000. - 20 * np.arange(H), x=300000. + 20 * np.arange(Wd)).rio.write_crs('EPSG:32631')
    s = forest_session(utm)
    truth, rng = cube.is_crop.values, np.random.default_rng(0)
    for cls, mask in (('crop', truth), ('non_crop', ~truth)):
        rows, cols = np.nonzero(mask)
        for i in rng.choice(len(rows), 5, replace=False):
            lo, la = to_ll.transform(float(utm.x[cols[i]]), float(utm.y[rows[i]]))
            s.add_label(la, lo, cls)
            assert s.labels[['row', 'col']].values[-1].tolist() == [rows[i], cols[i]]
    p = s.adapt().predict()
    assert roc_auc_score(truth.ravel(), p.values.ravel()) > 0.7
    sg = s.suggest(3)
    lo, la = to_ll.transform(utm.x.values[sg.col.values], utm.y.values[sg.row.values])
    np.testing.assert_allclose(sg.lon.values, lo, atol=1e-9); np.testing.assert_allclose(sg.lat.values, la, atol=1e-9)
    assert rioxarray.open_rasterio(s.export_proba(tmp_path / 'p.tif')).rio.crs.to_epsg() == 32631
    W, S, E, N = s.bounds
    s.set_region((W, S, (W + E) / 2, N))
    assert 0.4 * Wd <= s.raster.sizes['x'] <= 0.6 * Wd and s.raster.sizes['y'] == H


def test_bands_must_match_the_model(cube):
    with pytest.raises(AgrinbError, match=r"field 'band'.*missing \['B2', 'B3'"):
        forest_session(cube.drop_sel(band=['B2', 'B3']))
    renamed = cube.assign_coords(band=[b.lower() for b in CROPHARVEST_BANDS])
    with pytest.raises(AgrinbError, match="Did you mean 'vv'"):
        forest_session(renamed)
    shuffled = cube.isel(band=np.arange(18)[::-1])  # right bands, another order: reordered, not refused
    test = forest_session(shuffled)
    assert list(test.raster.band.values) == CROPHARVEST_BANDS
    with pytest.raises(AgrinbError, match="field 'time'.*12 time steps"):
        forest_session(cube.isel(time=slice(0, 10)))


def test_all_nan_months(cube):
    bad = cube.copy(deep=True)
    bad[[2, 5]] = np.nan
    with pytest.raises(AgrinbError, match=r"all-NaN months at time index \[2, 5\]"):
        forest_session(bad)
    gappy = cube.copy(deep=True)
    gappy[2, :, :5, :5] = np.nan  # partial gaps are filled, not refused
    s = forest_session(gappy)
    assert np.isfinite(s.features()).all()


def test_labels_in_another_crs(cube, tmp_path):
    s = forest_session(cube)
    rows, cols = [3, 10, 30], [4, 20, 35]
    lat, lon = cube.y.values[rows], cube.x.values[cols]
    utm = gpd.GeoDataFrame({'cls': ['crop', 'non_crop', 'crop']}, geometry=gpd.points_from_xy(lon, lat), crs=4326).to_crs(32631)
    assert abs(utm.geometry.x.iloc[0]) > 1000  # really metres
    s.add_labels(utm)
    assert s.labels[['row', 'col']].values.tolist() == [[r, c] for r, c in zip(rows, cols)]
    with pytest.raises(AgrinbError, match="field 'crs'"):
        s.add_labels(gpd.GeoDataFrame({'cls': ['crop']}, geometry=gpd.points_from_xy(lon[:1], lat[:1])))
    with pytest.raises(AgrinbError, match='another CRS'):
        s.add_label(utm.geometry.y.iloc[0], utm.geometry.x.iloc[0], 'crop')
    # GeoJSON written by the session reads back onto the same pixels
    path = s.export_labels(tmp_path / 'labels.geojson')
    s2 = forest_session(cube); s2.add_labels(path)
    assert s2.labels[['row', 'col', 'cls']].values.tolist() == s.labels[['row', 'col', 'cls']].values.tolist()


def test_export_path_that_cannot_be_written(cube, tmp_path):
    s = forest_session(cube)
    label_truth(s, cube, 3, np.random.default_rng(0))
    s.adapt().predict()
    blocker = tmp_path / 'a_file'; blocker.write_text('x')
    for f, name in [(s.export_labels, 'l.geojson'), (s.export_proba, 'p.tif'), (s.export_html, 'm.html')]:
        with pytest.raises(AgrinbError, match='a writable folder'): f(blocker / name)
    # the destination is a folder: refused before any work (`predict.write_map`), nothing written beside it
    target = tmp_path / 'out.tif'; target.mkdir()
    with pytest.raises(AgrinbError, match="out.tif: field 'out'.*a folder"): s.export_proba(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['a_file', 'out.tif'] and not any(target.iterdir())


def test_adapt_needs_two_labels_of_each_class(cube):
    s = forest_session(cube)
    with pytest.raises(AgrinbError, match='adapt.*0 crop, 0 non_crop'): s.adapt()
    label_truth(s, cube, 2, np.random.default_rng(0))
    s.undo()
    with pytest.raises(AgrinbError, match='2 crop, 1 non_crop'): s.adapt()
    with pytest.raises(AgrinbError, match='adapt'): s.suggest(3)
    with pytest.raises(AgrinbError, match="one of \\['crop', 'non_crop'\\]"): s.add_label(float(cube.y[0]), float(cube.x[0]), 'maize')


# ---- logic -----------------------------------------------------------------------------------------------------

def test_predict_is_batch_independent_and_georeferenced(cube, tmp_path):
    s = forest_session(cube)
    label_truth(s, cube, 5, np.random.default_rng(1))
    s.adapt()
    a = s.predict(batch_size=100).values.copy(); b = s.predict(batch_size=10**6)
    np.testing.assert_allclose(a, b.values, atol=1e-6)
    assert roc_auc_score(cube.is_crop.values.ravel(), a.ravel()) > 0.7
    back = rioxarray.open_rasterio(s.export_proba(tmp_path / 'p.tif'))
    np.testing.assert_allclose(back.x.values, cube.x.values); np.testing.assert_allclose(back.y.values, cube.y.values)
    assert back.rio.crs.to_epsg() == 4326


def test_suggest_is_uncertain_and_spread(cube):
    s = forest_session(cube)
    label_truth(s, cube, 4, np.random.default_rng(2))
    p = s.adapt().predict().values
    sg = s.suggest(6)
    assert len(sg) == 6 and len(set(zip(sg.row, sg.col))) == 6
    assert not set(zip(sg.row, sg.col)) & set(zip(s.labels.row, s.labels.col))
    d = np.sqrt((sg.row.values[:, None] - sg.row.values[None]) ** 2 + (sg.col.values[:, None] - sg.col.values[None]) ** 2)
    assert d[~np.eye(6, dtype=bool)].min() >= 2  # not clumped on neighbouring pixels
    assert np.abs(sg.proba - 0.5).max() <= np.quantile(np.abs(p - 0.5), 0.5)


def test_region_and_country(cube):
    s = forest_session(cube)
    W, S, E, N = s.bounds
    s.add_label(float(cube.y[35]), float(cube.x[35]), 'crop')  # south-east corner: dropped by the crop below
    s.add_label(float(cube.y[2]), float(cube.x[2]), 'crop')
    s.set_region((W, (S + N) / 2, (W + E) / 2, N))
    assert s.raster.sizes['y'] == 20 and s.raster.sizes['x'] == 20 and len(s.labels) == 1
    with pytest.raises(AgrinbError, match='overlapping'): s.set_region((W + 20, S, E + 20, N))
    syn = LabelingSession(learner=RandomForest(seed=0), stats='raster', region='Togo', size=(16, 16), progress=False)
    syn.set_country('Kenya')
    assert syn.region == 'Kenya' and syn.contains(float(syn.raster.y.mean()), float(syn.raster.x.mean()))
    with pytest.raises(AgrinbError, match='Did you mean'): syn.set_country('Kenia')


def test_widget_turns_errors_into_messages(cube):
    ml = MapLabeler(forest_session(cube))
    ml.on_interaction(type='click', coordinates=[0.0, 0.0])  # far off the raster
    assert ml.last_error and ml.last_message == 'That point is outside the image — click inside the coloured area.'
    assert 'a point on the raster' in ml.last_detail and 'a point on the raster' in ml.log_view.value  # precise, in the log
    assert 'outside the image' in ml.message.value and 'field' not in ml.message.value
    ml.adapt_btn.click()
    assert ml.last_error and '0 crop, 0 non_crop' in ml.last_message and ml.progress.value == 0
    assert ml.last_message.startswith('Label at least 2 points of each class')
    ml.suggest_btn.click(); assert ml.last_error and ml.last_message.startswith('Press Adapt first')
    ml.cls.value = 'crop'; ml.on_interaction(type='click', coordinates=[float(cube.y[1]), float(cube.x[1])])
    assert '1 label</b>' in ml.count.value and '1 labels' not in ml.count.value
    ml.undo_btn.click()
    for r, c, k in [(1, 1, 'crop'), (5, 5, 'crop'), (9, 9, 'non_crop'), (13, 13, 'non_crop')]:
        ml.cls.value = k; ml.on_interaction(type='click', coordinates=[float(cube.y[r]), float(cube.x[c])])
    assert len(ml.label_layer.layers) == 4 and '4 labels' in ml.count.value
    ml.on_interaction(type='mousemove', coordinates=[float(cube.y[20]), float(cube.x[20])])  # only the readout changes
    assert len(ml.session.labels) == 4 and 'pixel (20, 20)' in ml.readout.value and 'NDVI' in ml.readout.value
    ml.adapt_btn.click()
    assert not ml.last_error, ml.last_message
    assert ml.proba_layer in ml.map.layers and ml.progress.value == pytest.approx(1.0) and ml.progress.description == 'done'
    ml.on_interaction(type='mousemove', coordinates=[float(cube.y[20]), float(cube.x[20])])
    assert f'P(crop) {float(ml.session.proba.values[20, 20]):.2f}' in ml.readout.value
    ml.opacity.value = 0.3; assert ml.proba_layer.opacity == 0.3
    ml.suggest_btn.click(); assert len(ml.suggest_layer.layers) == ml.n_suggest
    ml.clear_btn.click(); assert len(ml.label_layer.layers) == 0 and len(ml.suggest_layer.layers) == 0
    assert ml.proba_layer not in ml.map.layers and ml.progress.value == 0 and ml.session.predictor is None
    ml.undo_btn.click(); assert len(ml.label_layer.layers) == 4 and ml.proba_layer in ml.map.layers
    ml.on_draw(None, 'created', {'geometry': {'type': 'Polygon', 'coordinates': [[[float(cube.x[0]), float(cube.y[0])],
                [float(cube.x[19]), float(cube.y[0])], [float(cube.x[19]), float(cube.y[19])], [float(cube.x[0]), float(cube.y[19])]]]}})
    assert not ml.last_error, ml.last_message
    assert ml.session.raster.sizes['x'] == 20 and ml.proba_layer not in ml.map.layers
    ml.undo_btn.click()  # the crop is undone: the whole raster, its labels and its map are back
    assert ml.session.raster.sizes['x'] == 40 and ml.proba_layer in ml.map.layers and ml.last_message == 'undid the last crop'
    assert ml.raster_layer.bounds == ml._bounds_ll() and len(ml.session.labels) == 4


def test_suggestion_click_labels_and_label_click_removes(cube):
    s = forest_session(cube)
    label_truth(s, cube, 3, np.random.default_rng(4))
    ml = MapLabeler(s); ml.adapt(); ml.suggest()
    sg = s.suggestions.copy()
    ml.cls.value = 'non_crop'
    marker = ml.suggest_layer.layers[2]  # the browser sends a marker click as this message
    marker._handle_mouse_events(None, {'event': 'interaction', 'type': 'click', 'coordinates': list(marker.location)}, None)
    assert len(s.labels) == 7 and s.labels[['row', 'col', 'cls']].values[-1].tolist() == [sg.row[2], sg.col[2], 'non_crop']
    assert len(ml.suggest_layer.layers) == len(sg) - 1 and (sg.row[2], sg.col[2]) not in set(zip(s.suggestions.row, s.suggestions.col))
    # a click on a label's marker (within its radius at this zoom) removes that label and only it
    target = s.labels.iloc[1]
    px = 360 / (256 * 2 ** ml.map.zoom)  # degrees per screen pixel
    ml.on_interaction(type='click', coordinates=[target.lat, target.lon + 3 * px])
    assert len(s.labels) == 6 and (target.row, target.col) not in set(zip(s.labels.row, s.labels.col))
    assert ml.last_message == f'removed a {target.cls} label (Undo puts it back)'
    ml.undo_btn.click(); assert len(s.labels) == 7
    # far from every marker, a click labels
    far = np.argwhere(np.ones((40, 40), bool))
    free = [rc for rc in far if min(np.hypot(*(rc - np.c_[s.labels.row, s.labels.col]).T)) > 6][0]
    ml.on_interaction(type='click', coordinates=[float(cube.y[free[0]]), float(cube.x[free[1]])]); assert len(s.labels) == 8


def test_regions_have_their_own_cubes():
    togo, kenya = make_datacube('Togo', (32, 32), seed=0), make_datacube('Kenya', (32, 32), seed=0)
    assert (togo.is_crop.values != kenya.is_crop.values).mean() > 0.1  # not the same fields in other colours
    assert (togo.field.values != kenya.field.values).any()
    np.testing.assert_array_equal(make_datacube('Kenya', (32, 32), seed=0).field.values, kenya.field.values)  # stable
    syn = LabelingSession(learner=RandomForest(seed=0), stats='raster', region='Togo', size=(32, 32), progress=False)
    ml = MapLabeler(syn); ml.country.value = 'Kenya'
    assert not ml.last_error, ml.last_message
    assert (syn.raster.is_crop.values != togo.is_crop.values).mean() > 0.1 and 'Kenya' in ml.place_layer.layers[1].icon.html
    assert 'Kenya' in {f['properties']['name'] for f in ml.border_layer.data['features']}


def test_offline_base_map_and_tiles_note(cube):
    ml = MapLabeler(forest_session(cube))
    names = {f['properties']['name'] for f in ml.border_layer.data['features']}
    assert {'Togo', 'Ghana', 'Benin'} <= names and 'Brazil' not in names and ml.border_layer in ml.map.layers
    assert ml.tiles is None and not any(getattr(l, 'url', '').startswith('https://') for l in ml.map.layers)
    online = MapLabeler(forest_session(cube), basemap=True)
    assert 'OpenStreetMap' in online.tiles.attribution and online.map.layers[0] is online.tiles
    online._tiles_probe.join(30)
    from agrinb.app import tiles_reachable
    if tiles_reachable(timeout=5): assert online.tiles_note.value == ''
    else: assert 'cannot be loaded' in online.tiles_note.value


def test_export_names_and_offline_note(cube, tmp_path):
    import json
    s = forest_session(cube); label_truth(s, cube, 2, np.random.default_rng(0))
    out = s.export(tmp_path, name='fields')
    assert json.loads(out['labels'].read_text())['name'] == 'fields_labels'  # not the temporary file's name
    assert 'stays blank offline' in out['html'].read_text()
    ml = MapLabeler(s); ml.export_dir.value = str(tmp_path / 'w'); ml.export()
    assert 'offline it is blank' in ml.last_message and not ml.last_error


# ---- the real learner and a real export --------------------------------------------------------------------------

def test_pretrained_timl_is_cached_atomically(tmp_path, cube):
    cfg = dict(n_samples=1500, meta_steps=2)
    learner, stats = pretrained_timl(cache=tmp_path, progress=False, **cfg)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 1 and files[0].endswith('.pt') and not any('.tmp' in f for f in files), files  # stats inside
    np.testing.assert_allclose(learner_stats(tmp_path / files[0]).mean, stats.mean)
    again, stats2 = pretrained_timl(cache=tmp_path, progress=False, **cfg)
    np.testing.assert_allclose(stats.mean, stats2.mean)
    preds = []
    for lrn in (learner, again):
        s = LabelingSession(cube, learner=lrn, stats=stats, progress=False)
        label_truth(s, cube, 3, np.random.default_rng(0))
        preds.append(s.adapt().predict().values)
    np.testing.assert_allclose(preds[0], preds[1], atol=1e-5)


def test_real_earth_engine_export():
    if not TOGO_TIF.exists(): pytest.skip(f'{TOGO_TIF} not found (shared data not present)')
    s = LabelingSession(TOGO_TIF, learner=RandomForest(seed=0), stats='raster', progress=False)
    assert s.raster.shape == (12, 18, 17, 17) and np.isfinite(s.features()).all()
    W, S, E, N = s.bounds
    assert 6 < S < N < 11.2 and -0.2 < W < E < 1.9  # in Togo
    ys, xs = s.raster.y.values, s.raster.x.values
    for r, c, k in [(1, 1, 'crop'), (2, 3, 'crop'), (14, 14, 'non_crop'), (15, 12, 'non_crop')]:
        s.add_label(float(ys[r]), float(xs[c]), k)
    p = s.adapt().predict()
    assert p.shape == (17, 17) and np.isfinite(p.values).all()
    assert 'Togo' in MapLabeler(s).country.options


def test_map_without_the_app_packages_names_the_extra():
    "With the notebook packages hidden (a real blocking import finder), the map says which extra to install."
    from agrinb.extras import hide_packages_code
    code = hide_packages_code() + ("import agrinb.app, agrinb.maps\n"
        "for f in (lambda: agrinb.app.MapLabeler(), lambda: agrinb.maps.folium_map((0, 0, 1, 1), None)):\n"
        "    try: f(); print('no error')\n"
        "    except Exception as e: print(type(e).__name__, str(e).splitlines()[0])\n")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    lines = r.stdout.strip().splitlines()
    assert r.returncode == 0 and len(lines) == 2, r.stdout + r.stderr
    assert lines[0].startswith('AgrinbError MapLabeler:') and 'pip install "agrinb[app]"' in lines[0], lines[0]
    assert lines[1].startswith('AgrinbError folium_map:') and 'pip install "agrinb[app]"' in lines[1], lines[1]


# ---- Presto: the default on a real raster ----------------------------------------------------------------------

def test_presto_bad_choices(cube):
    "A learner name, statistics Presto does not take, a start month and bands Presto cannot read get clear errors."
    small = cube.isel(y=slice(0, 8), x=slice(0, 8))
    with pytest.raises(AgrinbError, match=r"field 'learner'.*Did you mean 'presto'"):
        LabelingSession(small, learner='prestto', progress=False)
    with pytest.raises(AgrinbError, match=r"field 'stats'.*raw values"):
        LabelingSession(small, learner='presto', stats='raster', progress=False)
    with pytest.raises(AgrinbError, match=r"field 'month'.*0\.\.11"):
        LabelingSession(small, learner='presto', month=12, progress=False)
    odd = small.assign_coords(band=[f'b{i}' for i in range(18)])
    with pytest.raises(AgrinbError, match=r"field 'band'.*CropHarvest band names Presto reads"):
        LabelingSession(odd, learner='presto', progress=False)
    # a raster with some of the CropHarvest bands (NDVI and the 10 m bands) is Presto's by default
    few = LabelingSession(small.sel(band=['B2', 'B3', 'B4', 'B8', 'NDVI']), progress=False)
    assert few.embedder is few.learner and few.bands == ['B2', 'B3', 'B4', 'B8', 'NDVI']
    assert few.embeddings().shape == (64, 128) and np.isfinite(few.embeddings()).all()


def test_presto_on_a_projected_raster_embeds_each_pixels_location(cube):
    "In UTM metres the encoder gets every pixel's own lat/lon (its location token), not the grid's metres."
    small = cube.isel(y=slice(0, 6), x=slice(0, 6))
    utm = small.assign_coords(y=900000. - 20 * np.arange(6), x=300000. + 20 * np.arange(6)).rio.write_crs('EPSG:32631')
    s = LabelingSession(utm, progress=False)
    z = s.embeddings()
    x = s.raster.values[:, :, 2, 3][None]
    want = s.embedder.model.embed(x, s.raster.lat.values[2, 3], s.raster.lon.values[2, 3], progress=False)
    np.testing.assert_allclose(z[2 * 6 + 3], want[0], atol=1e-4)
    wrong = s.embedder.model.embed(x, 0.0, 0.0, progress=False)
    assert np.abs(z[2 * 6 + 3] - wrong[0]).max() > 1e-3


def test_presto_default_on_the_real_export_through_the_widget(tmp_path):
    if not TOGO_TIF.exists(): pytest.skip(f'{TOGO_TIF} not found (shared data not present)')
    from agrinb.meta.presto import PrestoProbe
    s = LabelingSession(TOGO_TIF, progress=False)
    assert isinstance(s.learner, PrestoProbe) and s.month == 1 and s.bands == CROPHARVEST_BANDS and s.stats is None
    ml = MapLabeler(s)
    phases = []
    ml.progress.observe(lambda ch: phases.append((ml.progress.description, ch['new'])), 'value')
    ys, xs = s.raster.y.values, s.raster.x.values
    for cls, pts in (('crop', [(3, 4), (8, 8), (10, 5)]), ('non_crop', [(16, 2), (15, 15), (1, 16)])):
        ml.cls.value = cls
        for r, c in pts: ml.on_interaction(type='click', coordinates=[float(ys[r]), float(xs[c])])
    ml.adapt_btn.click()
    assert not ml.last_error, ml.last_message
    assert ml.last_message.startswith('embedded 289 pixels with Presto in') and 'adapted on 6 labels' in ml.last_message
    assert ('embedding', 1.0) in phases and phases[-1] == ('mapping', 1.0), phases
    assert ml.proba_layer in ml.map.layers and np.isfinite(s.proba.values).all()
    z = s.embeddings()
    ml.cls.value = 'crop'; ml.on_interaction(type='click', coordinates=[float(ys[6]), float(xs[9])])
    ml.adapt_btn.click()
    assert ml.last_message.startswith('adapted on 7 labels') and s.embeddings() is z   # no second encoder pass
    ml.suggest_btn.click(); assert len(ml.suggest_layer.layers) == 5
    out = s.export(tmp_path)
    tif = rioxarray.open_rasterio(out['proba'])
    assert tif.rio.crs.to_epsg() == 4326 and tif.shape == (1, 17, 17)
    np.testing.assert_allclose(tif.values[0], s.proba.values, atol=1e-6)
    np.testing.assert_allclose(tif.x.values, s.raster.x.values, atol=1e-9)
