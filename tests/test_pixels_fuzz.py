"Property-based checks of gap filling and PixelDataset round trips (hypothesis)."
import numpy as np, pandas as pd, pytest
from hypothesis import given, settings, strategies as st, HealthCheck
from hypothesis.extra.numpy import arrays
from agrinb.data.pixels import PixelDataset, fill_gaps, BandStats
from agrinb.core import AgrinbError

vals = st.floats(-1e3, 1e3, allow_nan=False, width=32)
series = arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 14), st.integers(1, 4)), elements=vals)

@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(series, st.data())
def test_fill_gaps_properties(x, data):
    miss = data.draw(arrays(bool, x.shape))
    xm = np.where(miss, np.nan, x).astype(np.float32)
    band_has_obs = (~np.isnan(xm)).reshape(-1, x.shape[2]).any(0)
    if not band_has_obs.all():
        with pytest.raises(AgrinbError): fill_gaps(xm)
        return
    f = fill_gaps(xm)
    assert f.shape == x.shape and not np.isnan(f).any()
    obs = ~np.isnan(xm)
    assert np.array_equal(f[obs], xm[obs])                      # observed values are never changed
    # a filled value lies within the range of the observed values of its series or of its band
    lo = np.nanmin(xm.reshape(-1, x.shape[2]), 0); hi = np.nanmax(xm.reshape(-1, x.shape[2]), 0)
    assert (f >= lo - 1e-3).all() and (f <= hi + 1e-3).all()

@settings(max_examples=50, deadline=None)
@given(series)
def test_welford_matches_numpy(x):
    s = BandStats.empty(x.shape[2])
    for part in np.array_split(x, 3): s.update(part)
    np.testing.assert_allclose(s.mean, x.reshape(-1, x.shape[2]).astype(np.float64).mean(0), rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(s.std, x.reshape(-1, x.shape[2]).astype(np.float64).std(0), rtol=1e-5, atol=1e-3)

@settings(max_examples=40, deadline=None)
@given(series)
def test_dataframe_round_trip(x):
    n, T, B = x.shape
    df = pd.DataFrame({'lat': np.zeros(n), 'lon': np.zeros(n), 'label': ['a'] * n})
    for t in range(T):
        for b in range(B): df[f'band{b}_t{t:02d}'] = x[:, t, b]
    d = PixelDataset.from_dataframe(df)
    assert d.bands == [f'band{b}' for b in range(B)] and np.array_equal(d.x, x)

def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 12, 18)).astype(np.float32); x[rng.random(x.shape) < .3] = np.nan
    d = PixelDataset.from_arrays(x, rng.uniform(-10, 10, 20), rng.uniform(-10, 10, 20), ['maize', 'non_crop'] * 10,
                                 regions='Togo', extra={'field_id': np.arange(20)})
    d = d.fill_gaps().normalize()
    d.save(tmp_path/'d.nc'); b = PixelDataset.load(tmp_path/'d.nc')
    assert np.array_equal(b.x, d.x) and np.array_equal(b.mask, d.mask) and list(b.ds.field_id.values) == list(range(20))
    np.testing.assert_array_equal(b.stats.mean, d.stats.mean)

def test_load_corrupt_file_names_it(tmp_path):
    p = tmp_path/'bad.nc'; p.write_bytes(b'not a netcdf file')
    with pytest.raises(AgrinbError, match='bad.nc'): PixelDataset.load(p)
