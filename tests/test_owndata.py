"Bring-your-own-table path (issues 14 and 15): wide and long readers, edge gap filling, crop registry, label rules."
from pathlib import Path
import numpy as np, pandas as pd, pytest
from hypothesis import given, settings, strategies as st
from agrinb.core import AgrinbError
from agrinb.data.pixels import PixelDataset, fill_gaps
from agrinb.tasks.pixels import build_tasks, register_crop, crop_name, CROP_GROUPS, CROP_SYNONYMS, NON_CROP

DATA = Path(__file__).parent.parent/'..'/'shared'/'data'/'presto_algae_blooms'
DOY = np.arange(1, 354, 16)

def user_table(n=40, seed=0):
    "Issue 14's shape: X1..X353 NDVI (day of year), a quarter missing, label_1 / label_2, mixed labels."
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.uniform(0, 1, (n, 23)), columns=[f'X{d}' for d in DOY]).mask(rng.random((n, 23)) < .25)
    labs = np.array(['wheat', 'wheat-rice', 'fallow', 'melons', 'rice', 'alfalfa-maize'])
    return df.assign(label_1=labs[np.arange(n) % 6], label_2=['x'] * n, lat=rng.uniform(29, 31, n),
                     lon=rng.uniform(74, 76, n), region=np.where(np.arange(n) < n // 2, 'A', 'B'))

def test_issue14_label_2_not_read_as_a_band():
    df = user_table()
    with pytest.raises(AgrinbError, match='label_2'): PixelDataset.from_dataframe(df, label='label_1')
    d = PixelDataset.from_dataframe(df, label='label_1', value_columns=[f'X{d}' for d in DOY])   # was a TypeError
    assert d.x.shape == (40, 23, 1) and list(d.ds.time.values) == list(DOY)
    np.testing.assert_array_equal(d.x[:, :, 0], df[[f'X{d}' for d in DOY]].to_numpy(np.float32))
    assert 0.15 < np.isnan(d.x).mean() < 0.35

def test_issue14_registry_and_tasks():
    register_crop('fallow', 'non_crop')
    assert CROP_GROUPS['fallow'] == NON_CROP and crop_name('melons') == 'melon' and crop_name('Sweet Potatoes') == 'sweet_potato'
    with pytest.raises(AgrinbError, match='non_crop'): register_crop('x', 'noncrop_group')
    d = PixelDataset.from_dataframe(user_table(120).drop(columns='label_2'), label='label_1')
    with pytest.raises(AgrinbError, match="sep='-'"): build_tasks(d, by='region', progress=False)
    ts = build_tasks(d, by='region', sep='-', min_per_class=5, kinds=('rest', 'non_crop'), progress=False)
    lab = d.labels
    wheat = [t for t in ts if t.info.target == 'wheat']
    assert len(wheat) == 4 and all(t.info.group == 'cereals' for t in wheat)
    for t in wheat:
        assert set(lab[t.ids[t.y == 1]]) == {'wheat'} and not any('wheat' in l for l in lab[t.ids[t.y == 0]])
    nc = [t for t in ts if t.name.endswith('_vs_non_crop')]
    assert nc and all(set(lab[t.ids[t.y == 0]]) == {'fallow'} for t in nc)
    maize = [t for t in ts if t.info.target == 'maize']     # only in the mixed 'alfalfa-maize': no positives, no task
    assert not maize

def test_issue14_edge_fill_options():
    x = np.array([[[np.nan], [2.], [np.nan], [4.], [np.nan]]], np.float32)
    np.testing.assert_allclose(fill_gaps(x)[0, :, 0], [2, 2, 3, 4, 4])
    np.testing.assert_allclose(fill_gaps(x, edge='mean')[0, :, 0], [3, 2, 3, 4, 3])
    with pytest.raises(AgrinbError, match='edge'): fill_gaps(x, edge='linear')

def base(n=3):
    return pd.DataFrame({'lat': np.linspace(0, 1, n), 'lon': np.linspace(0, 1, n), 'label': ['maize'] * n,
                         'B4_t1': np.arange(n, dtype=float), 'B4_t2': np.ones(n)})

@pytest.mark.parametrize('change, match', [
    (lambda d: d.assign(B4_t01=5.), 'B4_t01'),                        # issue 15: duplicate after parsing
    (lambda d: d.assign(label=[np.nan, 'maize', 'maize']), r'rows \[0\]'),  # issue 15: NaN label is not a crop
    (lambda d: d.assign(label=None), 'a label in every row'),         # issue 15: labels=None is not class 'None'
    (lambda d: d.assign(label=['', 'maize', 'maize']), r'rows \[0\]'),
    (lambda d: d.assign(lat=[0, 91, 0]), '±90'),
    (lambda d: d.assign(lon=[0, 'east', 0]), '±180'),
    (lambda d: d.assign(B4_t2=['a', 'b', 'c']), 'non-numeric'),
    (lambda d: d.assign(X1=1.), 'one naming kind'),
    (lambda d: d.drop(columns='label'), "field 'label'"),
    (lambda d: d.drop(columns=['B4_t1', 'B4_t2']), 'value columns'),
    (lambda d: d.iloc[:0], 'at least one row'),
])
def test_bad_tables(change, match):
    with pytest.raises(AgrinbError, match=match): PixelDataset.from_dataframe(change(base()))

def test_duplicate_rows_by_id_and_numeric_labels_kept():
    d = base().assign(fid=[1, 2, 2])
    with pytest.raises(AgrinbError, match=r'repeated ids \[2\]'): PixelDataset.from_dataframe(d, id='fid')
    assert list(PixelDataset.from_dataframe(base().assign(label=[0.5, 0, 1])).labels) == ['0.5', '0.0', '1.0']   # 0.5 not coerced to 0

NAMERS = {'step': lambda b, t: f'{b}_t{t:02d}', 'bare': lambda b, t: f'{b}{t * 16 + 1}',
          'date': lambda b, t: f'{b}_{(pd.Timestamp("2019-01-01") + pd.Timedelta(days=16 * t)).strftime("%Y%m%d")}',
          'dash': lambda b, t: f'{b}_{(pd.Timestamp("2019-01-01") + pd.Timedelta(days=16 * t)).strftime("%Y-%m-%d")}'}

@settings(max_examples=30, deadline=None)
@given(st.sampled_from(sorted(NAMERS)), st.integers(1, 5), st.integers(1, 3), st.integers(1, 6), st.data())
def test_wide_and_long_round_trip(kind, n, B, T, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
    x = rng.normal(size=(n, T, B)).astype(np.float32); x[rng.random(x.shape) < .3] = np.nan
    bands = [f'{"ND" if kind == "bare" else "B"}{"ABC"[b]}' for b in range(B)]
    df = pd.DataFrame({'lat': np.zeros(n), 'lon': np.zeros(n), 'label': ['rice'] * n, 'fid': np.arange(n) + 10})
    cols = {NAMERS[kind](bands[b], t): x[:, t, b] for t in range(T) for b in range(B)}
    order = data.draw(st.permutations(list(cols)))
    df = pd.concat([df, pd.DataFrame({c: cols[c] for c in order})], axis=1)
    d = PixelDataset.from_dataframe(df, id='fid')
    assert sorted(d.bands) == sorted(bands) and d.n_time == T
    got = d.x[:, :, [d.bands.index(b) for b in bands]]
    np.testing.assert_array_equal(got, x)
    long = df.melt(id_vars=['fid', 'lat', 'lon', 'label'], var_name='col', value_name='value').dropna(subset=['value'])
    if long.empty: return
    parse = {NAMERS[kind](bands[b], t): (bands[b], t) for t in range(T) for b in range(B)}
    long = long.assign(band=[parse[c][0] for c in long.col], step=[parse[c][1] for c in long.col])
    lg = PixelDataset.from_long(long, id='fid', time='step')
    present = sorted(long.fid.unique())
    for i, f in enumerate(lg.ds.id.values):
        for j, b in enumerate(lg.bands):
            np.testing.assert_array_equal(lg.x[i, :, j], x[f - 10, list(lg.ds.time.values), bands.index(b)])
    assert list(lg.ds.id.values) == list(long.fid.unique()) and len(present) == len(lg)

def test_long_refuses_bad_tables():
    long = pd.DataFrame({'id': [1, 1, 2], 'date': ['2019-01-01', '2019-01-17', '2019-01-01'], 'band': 'NDVI',
                         'value': [.1, .2, .3], 'label': ['rice', 'rice', 'fallow'], 'lat': 0., 'lon': 0.})
    assert PixelDataset.from_long(long).x.shape == (2, 2, 1)
    for bad, match in [(long.assign(date=['2019-01-01', 'soon', '2019-01-01']), 'soon'),
                       (long.assign(value=['a', 'b', 'c']), 'non-numeric'),
                       (long.assign(lat=[0., 1., 0.]), 'conflicting ids'),
                       (pd.concat([long, long.iloc[:1]]), 'one row per'),
                       (long.drop(columns='band'), "field 'band'"),
                       (long.assign(lat=[100., 100., 0.]), '±90')]:
        with pytest.raises(AgrinbError, match=match): PixelDataset.from_long(bad)

@pytest.mark.skipif(not DATA.exists(), reason='needs ../shared/data/presto_algae_blooms (real series)')
def test_real_series_through_a_wide_csv(tmp_path):
    x = np.load(DATA/'s1_s2_era5_srtm.npy')[:200, :, [4, 17]].astype(np.float32)     # B4 and NDVI, 12 months
    ll = np.load(DATA/'latlon.npy')[:200]
    rng = np.random.default_rng(0); x[rng.random(x.shape[:2]) < .25] = np.nan
    df = pd.DataFrame({f'{b}_2019{m + 1:02d}01': x[:, m, i] for m in range(12) for i, b in enumerate(['B4', 'NDVI'])})
    df = df.assign(lat=ll[:, 0], lon=ll[:, 1], label=np.where(np.arange(200) % 3, 'maize', 'fallow'))
    df.to_csv(tmp_path/'t.csv', index=False)
    d = PixelDataset.from_dataframe(pd.read_csv(tmp_path/'t.csv'), non_crop=['fallow'])
    assert d.bands == ['B4', 'NDVI'] and str(d.ds.time.values[0])[:10] == '2019-01-01' and d.n_time == 12
    np.testing.assert_allclose(d.x, x, rtol=1e-6); assert (d.is_crop == (np.arange(200) % 3 > 0)).all()

names = st.text(st.sampled_from('XBt_-0123456789a'), min_size=1, max_size=12)
cells = st.one_of(st.floats(allow_nan=True, allow_infinity=False, width=32), st.sampled_from(['x', '', None]))

@settings(max_examples=60, deadline=None)
@given(st.lists(names, min_size=1, max_size=6, unique=True), st.data())
def test_any_table_reads_or_says_why(cols, data):
    "Arbitrary column names and cells: a PixelDataset whose values are the table's, or an AgrinbError, never another exception."
    n = data.draw(st.integers(1, 4))
    df = pd.DataFrame({c: data.draw(st.lists(cells, min_size=n, max_size=n)) for c in cols})
    df = df.assign(lat=0., lon=0., label=data.draw(st.lists(st.sampled_from(['maize', None, 'fallow']), min_size=n, max_size=n)))
    try: d = PixelDataset.from_dataframe(df)
    except AgrinbError: return
    assert len(d) == n and d.labels.tolist() == df.label.tolist()
    num = df[[c for c in cols if pd.api.types.is_numeric_dtype(df[c])]].to_numpy(np.float32)
    assert set(d.x[~np.isnan(d.x)].tolist()) <= set(num[~np.isnan(num)].tolist())   # every value read is a cell of the table
