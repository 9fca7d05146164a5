"CropHarvest layout: exact round trips on real data, the Togo Earth Engine export, and bad input."
from pathlib import Path
import h5py, numpy as np, pandas as pd, pytest, xarray as xr
from agrinb.core import AgrinbError
from agrinb.data import cropharvest as ch
from agrinb.data.pixels import PixelDataset, CROPHARVEST_BANDS, NON_CROP

SHARED = Path(__file__).resolve().parents[1].parent / 'shared' / 'data'
PRESTO = SHARED / 'presto_algae_blooms'
TOGO_TIF = SHARED / 'ee_exports' / '98-togo_2019-02-06_2020-02-01.tif'

def _need(path):
    if not path.exists(): pytest.skip(f'{path} not found (../shared/data is absent)')

# ---- exact round trip of real arrays -------------------------------------------------------------------------
def test_presto_round_trip_is_bit_for_bit(tmp_path):
    _need(PRESTO / 's1_s2_era5_srtm.npy')
    x = np.load(PRESTO / 's1_s2_era5_srtm.npy'); ll = np.load(PRESTO / 'latlon.npy')
    target, is_test, uid = (np.load(PRESTO / f'{n}.npy') for n in ('target', 'is_test', 'uid'))
    assert x.shape == (1122, 12, 18) and x.dtype == np.float64
    labels = pd.DataFrame(dict(index=uid, dataset='presto-algae-blooms', lat=ll[:, 0], lon=ll[:, 1], is_crop=False,
                               label=[f'severity_{t}' for t in target], export_end_date=None, is_test=is_test.astype(bool)))
    ch.write_arrays(tmp_path, x, labels, progress=False)
    assert len(list((tmp_path / 'features' / 'arrays').glob('*.h5'))) == 1122
    back, rows = ch.read_arrays(tmp_path, progress=False)
    assert back.dtype == np.float64 and np.array_equal(back, x)
    assert np.array_equal(rows.lat.to_numpy(), ll[:, 0]) and np.array_equal(rows.lon.to_numpy(), ll[:, 1])
    assert list(rows['index'].astype(str)) == list(uid)
    # the same files as a PixelDataset: float32 values, labels and extra columns kept
    ds = ch.read_cropharvest(tmp_path, progress=False)
    assert np.array_equal(ds.x, x.astype(np.float32)) and ds.bands == CROPHARVEST_BANDS
    assert list(ds.labels) == [f'severity_{t}' for t in target]
    assert np.array_equal(ds.ds['is_test'].values.astype(bool), is_test.astype(bool))
    assert set(ds.regions) == {'United States of America'}
    assert np.array_equal(ds.ds['instance_lat'].values, ll[:, 0]) and np.array_equal(ds.ds['instance_lon'].values, ll[:, 1])
    # and one array file read alone keeps CropHarvest's attributes
    a, attrs = ch.read_array(tmp_path / 'features' / 'arrays' / f'{uid[0]}_presto-algae-blooms.h5')
    assert np.array_equal(a, x[0]) and attrs['label_lat'] == ll[0, 0] and attrs['label'] == f'severity_{target[0]}'

def test_pixeldataset_round_trip_with_gaps_and_test_file(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 12, 18)).astype(np.float32); x[rng.random(x.shape) < 0.25] = np.nan
    labels = rng.choice(['maize', 'wheat', NON_CROP], 40)
    ds = PixelDataset.from_arrays(x, rng.uniform(-1, 1, 40), rng.uniform(36, 37, 40), labels, dataset='kenya-demo')
    back = ch.read_cropharvest(ch.write_cropharvest(ds, tmp_path, export_end_date='2021-02-01', progress=False), progress=False)
    assert np.array_equal(back.x, ds.x, equal_nan=True)
    assert list(back.labels) == list(labels) and np.array_equal(back.is_crop, labels != NON_CROP)
    assert set(back.ds['export_end_date'].values) == {'2021-02-01'}
    nd = ch.read_normalizing_dict(tmp_path / 'features' / 'normalizing_dict.h5')
    np.testing.assert_allclose(nd['mean'], np.nanmean(x.reshape(-1, 18), 0), rtol=1e-5, atol=1e-6)
    # normalised data are written in raw units
    back2 = ch.read_cropharvest(ch.write_cropharvest(ds.normalize(), tmp_path / 'n', progress=False), progress=False)
    np.testing.assert_allclose(back2.x, ds.x, rtol=1e-5, atol=1e-5)
    y = np.where(labels == 'maize', 1, np.where(rng.random(40) < 0.2, -1, 0))
    p = ch.write_test_arrays(tmp_path / 'test_features' / 'Kenya_maize_2020_0_0.h5', x, y, ds.lat, ds.lon)
    t = ch.read_test_features(p, positive='maize', negative='other')
    assert np.array_equal(t.ds['y'].values, y) and np.array_equal(t.lat, ds.lat)
    assert set(t.labels[y == -1]) == {ch.UNLABELLED} and set(t.labels[y == 1]) == {'maize'}

# ---- the real Earth Engine export ----------------------------------------------------------------------------
def test_togo_tif_engineering():
    _need(TOGO_TIF)
    import rioxarray
    raw = rioxarray.open_rasterio(TOGO_TIF)
    names = list(raw.attrs['long_name']); v = raw.values
    ds = ch.engineer_tif(TOGO_TIF)
    assert ds.x.shape == (289, 12, 18) and np.isfinite(ds.x).all() and ds.bands == CROPHARVEST_BANDS
    # coordinates: pixel centres, row by row
    lon, lat = np.meshgrid(raw.x.values, raw.y.values)
    assert np.array_equal(ds.lat, lat.ravel()) and np.array_equal(ds.lon, lon.ravel())
    assert set(ds.regions) == {'Togo'}
    # every observed value is the raw band of the same name and step; B1 and B10 are gone
    obs = ds.mask
    for b, band in enumerate(CROPHARVEST_BANDS[:-1]):
        for t in (0, 5, 11):
            src = names.index(band) if band in ('elevation', 'slope') else names.index(band if t == 0 else f'{band}_{t}')
            want = v[src].ravel().astype(np.float32)
            m = obs[:, t, b]
            assert np.array_equal(ds.x[m, t, b], want[m]), (band, t)
    assert 'B1' not in ds.bands and 'B10' not in ds.bands
    # true NDVI from B8 and B4 (not CropHarvest's shifted bands)
    for t in (0, 6):
        b8, b4 = (v[names.index(n if t == 0 else f'{n}_{t}')].ravel() for n in ('B8', 'B4'))
        np.testing.assert_allclose(ds.x[:, t, -1], (b8 - b4) / (b8 + b4), rtol=1e-5, atol=1e-6)
    # gaps: slope is missing on the tile edge and takes the tile mean
    slope = v[names.index('slope')].ravel()
    edge = np.isnan(slope)
    assert edge.sum() > 0 and not obs[edge][:, :, CROPHARVEST_BANDS.index('slope')].any()
    np.testing.assert_allclose(ds.x[edge, 0, CROPHARVEST_BANDS.index('slope')], np.nanmean(slope), rtol=1e-4)  # float32 mean
    # the datacube holds the same numbers
    cube = ch.tif_to_datacube(TOGO_TIF)
    assert cube.dims == ('time', 'band', 'y', 'x') and list(cube.band.values) == CROPHARVEST_BANDS
    assert np.array_equal(cube.transpose('y', 'x', 'time', 'band').values.reshape(289, 12, 18), ds.x)
    assert cube.rio.crs.to_epsg() == 4326 and np.array_equal(cube.y.values, raw.y.values)

def test_togo_tif_to_cropharvest_folder(tmp_path):
    _need(TOGO_TIF)
    ds = ch.engineer_tif(TOGO_TIF)
    back = ch.read_cropharvest(ch.write_cropharvest(ds, tmp_path, progress=False), progress=False)
    assert np.array_equal(back.x, ds.x) and np.array_equal(back.lat, ds.lat) and np.array_equal(back.lon, ds.lon)
    assert set(back.ds['export_end_date'].values) == {'2020-02-01'} and set(back.labels) == {ch.UNLABELLED}
    assert not back.is_crop.any() and np.array_equal(back.ds['row'].values, ds.ds['row'].values)

def _tif(path, n_bands, crs='EPSG:4326', x0=1.0, y0=8.0, step=0.01, names=None):
    import rioxarray  # noqa: F401
    data = np.random.default_rng(0).uniform(1, 100, (n_bands, 3, 4)).astype(np.float32)
    da = xr.DataArray(data, dims=('band', 'y', 'x'), coords=dict(band=np.arange(1, n_bands + 1),
                      y=y0 - step * np.arange(3), x=x0 + step * np.arange(4)))
    if names: da.attrs['long_name'] = tuple(names)
    da.rio.write_crs(crs).rio.to_raster(path)
    return path

def test_projected_tif_gets_lat_lon(tmp_path):
    names = [b if t == 0 else f'{b}_{t}' for t in range(12) for b in ch.RAW_DYNAMIC_BANDS] + ch.RAW_STATIC_BANDS
    p = _tif(tmp_path / '7-demo_2019-02-01_2020-02-01.tif', 206, crs='EPSG:32631', x0=300000., y0=900000., step=10., names=names)
    ds = ch.engineer_tif(p, label='maize')
    from pyproj import Transformer
    lon, lat = Transformer.from_crs('EPSG:32631', 'EPSG:4326', always_xy=True).transform(300000. + 10, 900000. - 20)
    np.testing.assert_allclose([ds.lat[2 * 4 + 1], ds.lon[2 * 4 + 1]], [lat, lon], atol=1e-9)
    assert set(ds.labels) == {'maize'} and ds.is_crop.all() and ds.datasets[0] == 'demo'
    assert ds.ds.attrs['index'] == 7 and set(ds.ds['export_end_date'].values) == {'2020-02-01'}

# ---- bad input -----------------------------------------------------------------------------------------------
def test_missing_h5(tmp_path):
    with pytest.raises(AgrinbError, match=r"1_x\.h5: field 'path': expected an existing CropHarvest feature array"):
        ch.read_array(tmp_path / '1_x.h5')
    with pytest.raises(AgrinbError, match="normalizing_dict.h5: field 'path'"):
        ch.read_normalizing_dict(tmp_path / 'normalizing_dict.h5')

def test_missing_h5_named_by_labels(tmp_path):
    labels = pd.DataFrame(dict(index=[0, 1], dataset='d', lat=[0., 1.], lon=[0., 1.], is_crop=True, label='maize',
                               export_end_date='2020-02-01'))
    ch.write_arrays(tmp_path, np.zeros((2, 12, 18)), labels, progress=False)
    (tmp_path / 'features' / 'arrays' / '1_d.h5').unlink()
    x, rows = ch.read_arrays(tmp_path, progress=False)          # CropHarvest skips labels without features
    assert x.shape == (1, 12, 18) and list(rows['index']) == [0]
    with pytest.raises(AgrinbError, match=r"1_d\.h5: field 'path'"): ch.read_arrays(tmp_path, missing='error', progress=False)

def test_corrupt_h5(tmp_path):
    p = tmp_path / '3_broken.h5'; p.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(AgrinbError, match=r"3_broken\.h5: field 'contents': expected an HDF5 CropHarvest feature array"):
        ch.read_array(p)
    q = tmp_path / 'truncated.h5'
    ch.write_array(q, np.ones((12, 18))); q.write_bytes(q.read_bytes()[:500])
    with pytest.raises(AgrinbError, match="field 'contents'"): ch.read_array(q)

def test_array_of_wrong_shape(tmp_path):
    p = tmp_path / '4_x.h5'
    with h5py.File(p, 'w') as f: f['array'] = np.zeros((12, 17))
    with pytest.raises(AgrinbError, match=r"field 'array': expected a numeric array of shape \(12, 18\).*got float64 array of shape \(12, 17\)"):
        ch.read_array(p)
    with h5py.File(p, 'w') as f: f['values'] = np.zeros((12, 18))
    with pytest.raises(AgrinbError, match=r"field 'array': expected an HDF5 dataset named 'array'.*\['values'\]"): ch.read_array(p)
    with pytest.raises(AgrinbError, match="field 'array': expected shape"): ch.write_array(p, np.zeros((18, 12)))
    with h5py.File(p, 'w') as f: f['mean'] = np.zeros(18); f['std'] = np.zeros(17)
    with pytest.raises(AgrinbError, match=r"field 'std': expected a numeric array of shape \(18,\)"): ch.read_normalizing_dict(p)

def test_geojson_without_required_columns(tmp_path):
    df = pd.DataFrame(dict(lat=[6.5], lon=[1.2], index=[0], dataset=['togo'], label=['maize']))
    p = ch.write_labels(df, tmp_path / 'labels.geojson')
    with pytest.raises(AgrinbError, match=r"labels\.geojson: field 'is_crop, export_end_date': expected the CropHarvest label columns"):
        ch.read_labels(p)
    df2 = df.drop(columns='label').assign(is_crop=True, export_end_date='2020-02-01')
    with pytest.raises(AgrinbError, match="field 'label': expected"): ch.read_labels(ch.write_labels(df2, tmp_path / 'b.geojson'))
    # older releases name the index column dataset_index
    ok = ch.read_labels(ch.write_labels(df2.rename(columns={'index': 'dataset_index'}).assign(label=None), tmp_path / 'c.geojson'))
    assert 'index' in ok.columns
    (tmp_path / 'junk.geojson').write_text('{"type": "FeatureCollection", "features": [ oops')
    with pytest.raises(AgrinbError, match="junk.geojson: field 'contents': expected a GeoJSON file"):
        ch.read_labels(tmp_path / 'junk.geojson')

def test_geotiff_with_wrong_band_count(tmp_path):
    p = _tif(tmp_path / 'small.tif', 17 * 12)       # forgot the two static bands
    with pytest.raises(AgrinbError, match=r"small\.tif: field 'bands': expected 12 x 17 \+ 2 = 206 bands.*got 204"):
        ch.engineer_tif(p)
    with pytest.raises(AgrinbError, match="field 'bands'"): ch.tif_to_datacube(p)
    with pytest.raises(AgrinbError, match="field 'path': expected an existing GeoTIFF"): ch.engineer_tif(tmp_path / 'none.tif')

def test_geotiff_with_bands_in_wrong_order(tmp_path):
    names = [b if t == 0 else f'{b}_{t}' for t in range(12) for b in ch.RAW_DYNAMIC_BANDS] + ch.RAW_STATIC_BANDS
    names[0], names[1] = names[1], names[0]
    p = _tif(tmp_path / 'swapped.tif', 206, names=names)
    with pytest.raises(AgrinbError, match=r"field 'band 1': expected 'VV', got 'VH'"): ch.engineer_tif(p)

def test_writer_refuses_other_layouts(tmp_path):
    ds = PixelDataset.from_arrays(np.zeros((3, 12, 4)), [0] * 3, [0] * 3, ['a'] * 3)
    with pytest.raises(AgrinbError, match="write_cropharvest: field 'ds'"): ch.write_cropharvest(ds, tmp_path)
    labels = pd.DataFrame(dict(index=[0, 0], dataset='d', lat=0., lon=0., is_crop=True))
    with pytest.raises(AgrinbError, match="unique pairs"): ch.write_arrays(tmp_path, np.zeros((2, 12, 18)), labels, progress=False)
