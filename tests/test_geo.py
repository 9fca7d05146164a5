"Country boxes: the package table against the Natural Earth shapefile it was derived from."
import importlib.util
from pathlib import Path
import numpy as np, pytest
from agrinb.core import AgrinbError
from agrinb.data import geo

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / 'shared' / 'data'
SHP = SHARED / 'natural_earth_50m' / 'ne_50m_admin_0_countries.shp'

def _shapefile():
    if not SHP.exists(): pytest.skip(f'Natural Earth shapefile not found at {SHP} (../shared is absent)')
    gpd = pytest.importorskip('geopandas')
    return gpd.read_file(SHP, encoding='utf-8')

def _script():
    spec = importlib.util.spec_from_file_location('make_countries_table', ROOT / 'scripts' / 'make_countries_table.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod

def test_togo_box_matches_shapefile():
    g = _shapefile()
    togo = g[g.NAME_EN == 'Togo']
    assert len(togo) == 1 and togo.geometry.iloc[0].geom_type == 'Polygon'
    want = np.asarray(togo.total_bounds)           # min_lon, min_lat, max_lon, max_lat
    row = geo.lookup('Togo')
    assert len(row) == 1
    got = row[geo.BOX_COLUMNS].to_numpy(dtype=float)[0]
    assert np.array_equal(got, np.round(want, _script().DECIMALS))
    assert np.abs(got - want).max() <= 5e-7

def test_table_is_reproducible_from_shapefile():
    g = _shapefile()
    made = _script().make_table(SHP)
    table = geo.countries()
    assert list(made.columns) == list(table.columns)
    for c in made.columns:
        a, b = made[c].to_numpy(), table[c].to_numpy()
        assert (np.array_equal(a.astype(float), b.astype(float)) if a.dtype.kind in 'fi' else (a.astype(str) == b.astype(str)).all()), c
    # one box per polygon part, as CropHarvest does
    import shapely
    n_parts = dict(zip(g.NAME_EN, shapely.get_num_geometries(g.geometry.values)))
    assert table.groupby('name').size().to_dict() == n_parts

def test_every_country_found_by_name_and_iso():
    g = _shapefile()
    for name, a2, a3 in zip(g.NAME_EN, g.ISO_A2, g.ISO_A3):
        rows = geo.lookup(name.upper())
        assert set(rows.name) == {name}
        if a2 != '-99': assert set(geo.lookup(a2.lower()).name) == {name}
        if a3 != '-99': assert set(geo.lookup(a3).name) == {name}

def _points_inside(g, n=10, seed=0):
    "Up to `n` uniform random points inside each country (rejection sampling in its box), plus one per part."
    import shapely
    rng, lat, lon, name = np.random.default_rng(seed), [], [], []
    for country, geom in zip(g.NAME_EN, g.geometry):
        x0, y0, x1, y1 = geom.bounds
        x, y = rng.uniform(x0, x1, 400), rng.uniform(y0, y1, 400)
        keep = np.flatnonzero(shapely.contains_xy(geom, x, y))[:n]
        parts = shapely.point_on_surface(shapely.get_parts(geom))
        lon += list(x[keep]) + list(shapely.get_x(parts)); lat += list(y[keep]) + list(shapely.get_y(parts))
        name += [country] * (len(keep) + len(parts))
    return np.array(lat), np.array(lon), np.array(name, dtype=object)

def test_country_of_agrees_with_polygons():
    g = _shapefile()
    lat, lon, name = _points_inside(g)
    got = geo.country_of(lat, lon)
    agree = float(np.mean(got == name))
    print(f'country_of agrees with the polygons for {agree:.1%} of {len(name)} points inside countries')
    assert agree > 0.85
    # a point inside a polygon always lies in one of that country's boxes
    for la, lo, n in zip(lat[::7], lon[::7], name[::7]):
        assert n in set(geo.boxes_containing(la, lo).name)

def test_unknown_country_suggests_close_matches():
    with pytest.raises(AgrinbError) as e: geo.lookup('Keyna')
    msg = str(e.value)
    assert "field 'name'" in msg and "'Keyna'" in msg and "Did you mean 'Kenya'" in msg
    with pytest.raises(ValueError): geo.lookup('Atlantis')

def test_namibia_iso_code_is_not_missing():
    assert set(geo.lookup('NA').name) == {'Namibia'}
    assert (geo.countries().iso_a2 == 'NA').sum() == len(geo.lookup('Namibia'))

def test_to_sphere_dot_is_cosine_of_great_circle_angle():
    rng = np.random.default_rng(1)
    lat1, lat2 = rng.uniform(-90, 90, (2, 100)); lon1, lon2 = rng.uniform(-180, 180, (2, 100))
    a, b = geo.to_sphere(lat1, lon1), geo.to_sphere(lat2, lon2)
    p1, p2, dl = np.radians(lat1), np.radians(lat2), np.radians(lon2 - lon1)
    hav = np.sin((p2 - p1) / 2)**2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2)**2
    np.testing.assert_allclose((a * b).sum(-1), np.cos(2 * np.arcsin(np.sqrt(hav))), atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(a, axis=-1), 1, atol=1e-12)

def test_borders_are_reproducible_and_small():
    _shapefile()
    import json, sys
    sys.path.insert(0, str(ROOT / 'scripts'))
    try:
        spec = importlib.util.spec_from_file_location('make_borders', ROOT / 'scripts' / 'make_borders.py')
        mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    finally: sys.path.remove(str(ROOT / 'scripts'))
    shipped = ROOT / 'agrinb' / 'resources' / 'borders.geojson'
    assert shipped.stat().st_size < 1.5e6
    made = json.loads(mod._compact(mod.make_borders(SHP)))
    assert made == json.loads(shipped.read_text(encoding='utf-8'))
    assert {f['properties']['name'] for f in made['features']} == set(geo.countries().name)
    g = _shapefile()  # the simplified Togo still covers the real one's box to within the tolerance
    want = g[g.NAME_EN == 'Togo'].total_bounds
    ring = np.asarray(next(f for f in geo.borders(want)['features'] if f['properties']['name'] == 'Togo')['geometry']['coordinates'][0])
    assert np.abs(np.r_[ring.min(0), ring.max(0)] - want).max() < 2 * mod.TOLERANCE
