"Tasks: balanced k-shot sampling, determinism, held-out regions, clear errors, gap filling of empty series."
import warnings
import numpy as np
import pytest
from agrinb.core import AgrinbError
from agrinb.data.pixels import PixelDataset
from agrinb.data.synthetic import make_dataset
from agrinb.tasks import (Task, TaskInfo, build_tasks, test_tasks as make_test_tasks, benchmark_tasks, TEST_SPEC,
                          FAO_GROUPS, CROP_GROUPS, register_crop)

HELD = [r for r, _ in TEST_SPEC]


@pytest.fixture(scope='module')
def ds():
    return make_dataset(5000, seed=7, missing=0.15)


@pytest.fixture(scope='module')
def tasks(ds):
    return build_tasks(ds, exclude_regions=HELD, progress=False)


def toy_task(n_pos=30, n_neg=50, seed=0, name='toy'):
    g = np.random.default_rng(seed)
    x = g.normal(size=(n_pos + n_neg, 12, 4)).astype(np.float32)
    y = np.r_[np.ones(n_pos), np.zeros(n_neg)]
    perm = g.permutation(len(y))
    return Task(name, x[perm[:60]], y[perm[:60]], x[perm[60:]], y[perm[60:]], TaskInfo(10, 20, 'wheat'))


@pytest.mark.parametrize('k,q', [(1, 1), (5, 3), (10, 4)])
def test_episode_is_balanced_interleaved_and_disjoint(k, q):
    t = toy_task()
    for seed in range(5):
        e = t.episode(k=k, q=q, rng=seed)
        assert e.support_y.tolist() == [1, 0] * k and e.query_y.tolist() == [1, 0] * q
        assert len(set(e.support_ids)) == 2 * k and len(set(e.query_ids)) == 2 * q      # no sample twice
        assert not set(e.support_ids) & set(e.query_ids)
        # rows really are the samples the ids name, with their labels
        pos = {int(i): j for j, i in enumerate(t.ids)}
        for xs, ys, ids in ((e.support_x, e.support_y, e.support_ids), (e.query_x, e.query_y, e.query_ids)):
            rows = [pos[int(i)] for i in ids]
            np.testing.assert_array_equal(xs, t.x[rows]); np.testing.assert_array_equal(ys, t.y[rows])


def test_shots_draw_from_support_only_and_keep_query():
    t = toy_task()
    s = t.shots(4, rng=1)
    assert s.support_y.tolist() == [1, 0] * 4
    assert set(s.support_ids) <= set(t.support_ids) and len(set(s.support_ids)) == 8
    np.testing.assert_array_equal(s.query_x, t.query_x); np.testing.assert_array_equal(s.query_ids, t.query_ids)


def test_sampling_is_deterministic_by_seed():
    t = toy_task()
    a, b, c = t.episode(5, 3, rng=11), t.episode(5, 3, rng=11), t.episode(5, 3, rng=12)
    np.testing.assert_array_equal(a.support_ids, b.support_ids); np.testing.assert_array_equal(a.query_x, b.query_x)
    assert not np.array_equal(a.support_ids, c.support_ids)
    g1, g2 = np.random.default_rng(3), np.random.default_rng(3)
    np.testing.assert_array_equal(t.shots(6, g1).support_ids, t.shots(6, g2).support_ids)


def test_small_class_is_sampled_with_replacement_and_says_so():
    t = toy_task(n_pos=5, n_neg=60)
    with pytest.warns(UserWarning, match='with replacement'):
        e = t.episode(10, 4, rng=0)
    assert e.support_y.sum() == 10 and e.query_y.sum() == 4
    assert not set(e.support_ids) & set(e.query_ids)                    # still disjoint
    with warnings.catch_warnings():
        warnings.simplefilter('error')                                  # large enough: no warning
        toy_task(n_pos=30).episode(10, 4, rng=0)


def test_one_class_is_an_error(ds):
    x = np.zeros((10, 12, 3), np.float32)
    with pytest.raises(AgrinbError, match='both classes'):
        Task('one', x, np.ones(10), x[:0], [], TaskInfo(0, 0))
    only_pos_support = Task('t', x, np.ones(10), x[:4], [0, 0, 1, 1], TaskInfo(0, 0))
    with pytest.raises(AgrinbError, match='each class'):
        only_pos_support.shots(5, rng=0)
    with pytest.raises(AgrinbError, match='both classes'):
        make_test_tasks(ds, spec=[('Togo', 'coffee')])                   # no coffee grows in Togo


def test_unknown_crop_and_region_errors(ds):
    with pytest.raises(AgrinbError, match="Did you mean 'maize'"):
        TaskInfo(0, 0, 'maiz')
    with pytest.raises(AgrinbError, match='register_crop'):
        TaskInfo(0, 0, 'quinoa_x')
    sub = ds[:300]
    labels = sub.labels.astype(object); labels[sub.is_crop] = 'teff-local'
    odd = PixelDataset.from_arrays(sub.x, sub.lat, sub.lon, labels.astype(str), regions=sub.regions)
    with pytest.raises(AgrinbError, match='register_crop'):
        build_tasks(odd, progress=False)
    with pytest.raises(AgrinbError, match="Did you mean 'Kenya'"):
        make_test_tasks(ds, spec=[('Kenia', 'maize')])
    with pytest.raises(AgrinbError, match="Did you mean 'cereals'"):
        register_crop('teff-local', 'cereal')


def test_task_info_vector():
    v = TaskInfo(-19.5, -46.0, 'coffee').vector
    assert v.shape == (13,) and v.dtype == np.float32
    assert v[3 + FAO_GROUPS.index(CROP_GROUPS['coffee'])] == 1 and v[3:].sum() == 1
    np.testing.assert_allclose(TaskInfo(5, 5, 'crop').vector[3:12], 1 / 9, rtol=1e-6)
    assert TaskInfo(5, 5, 'crop').vector[12] == 0 and TaskInfo(5, 5, 'non_crop').vector[12] == 1
    np.testing.assert_allclose(np.linalg.norm(v[:3]), 1, rtol=1e-6)


def test_held_out_regions_never_in_training_tasks(ds, tasks):
    assert len(tasks) > 40
    for t in tasks:
        assert not np.isin(ds.regions[t.ids], HELD).any(), t.name
        assert not t.name.split('_')[0] in HELD
    by_region = build_tasks(ds, by='region', exclude_regions=HELD, progress=False)
    assert by_region and not any(np.isin(ds.regions[t.ids], HELD).any() for t in by_region)
    assert tasks.held_out == tuple(HELD)


def test_samples_inside_a_held_out_country_box_are_excluded(ds):
    # a sample of another region that lies inside Togo's box (as Ghana's and Benin's edges do) must not train
    from agrinb.data.geo import lookup
    togo = lookup('Togo').iloc[0]
    lat, lon, regions = ds.lat.copy(), ds.lon.copy(), ds.regions.astype(object)
    ghana = np.flatnonzero(regions == 'Ghana')[:20]
    lat[ghana], lon[ghana] = (togo.min_lat + togo.max_lat) / 2, (togo.min_lon + togo.max_lon) / 2
    moved = PixelDataset.from_arrays(ds.x, lat, lon, ds.labels, regions=regions.astype(str))
    tasks = build_tasks(moved, exclude_regions=['Togo'], progress=False)
    used = np.unique(np.concatenate([t.ids for t in tasks]))
    assert not np.isin(ghana, used).any()
    assert np.isin(np.flatnonzero(regions == 'Ghana')[20:], used).any()   # the rest of Ghana still trains


def test_test_tasks_support_is_train_split_query_is_test_split(ds, tasks):
    test = make_test_tasks(ds, stats=tasks.stats)
    assert [t.name for t in test] == ['Togo_crop', 'Kenya_maize', 'Brazil_coffee']
    for t, (region, target) in zip(test, TEST_SPEC):
        assert set(ds.regions[t.ids]) == {region} and t.info.target == target
        assert not set(t.support_ids) & set(t.query_ids)
        assert len(t) == (ds.regions == region).sum()
    again = make_test_tasks(ds, stats=tasks.stats)
    np.testing.assert_array_equal(again[1].query_x, test[1].query_x)
    b = benchmark_tasks(ds, progress=False)
    np.testing.assert_array_equal(b.test[0].support_x, test[0].support_x)   # same statistics, same arrays


def test_build_tasks_is_deterministic(ds, tasks):
    again = build_tasks(ds, exclude_regions=HELD, progress=False)
    assert [t.name for t in again] == [t.name for t in tasks]
    for a, b in zip(again[:10], tasks[:10]):
        np.testing.assert_array_equal(a.support_ids, b.support_ids); np.testing.assert_array_equal(a.query_x, b.query_x)
    other = build_tasks(ds, exclude_regions=HELD, seed=1, progress=False)
    assert any(not np.array_equal(a.support_ids, b.support_ids) for a, b in zip(other, tasks))


def test_series_nan_at_every_step_is_filled_with_the_band_mean(ds):
    x = ds.x.copy()
    i_band, i_optical = 3, 4
    x[i_band, :, 4] = np.nan                    # B4 missing for all 12 months
    x[i_optical, :, 2:13] = np.nan              # every optical band missing for all months
    x[i_optical, :, 17] = np.nan
    gappy = PixelDataset.from_arrays(x, ds.lat, ds.lon, ds.labels, regions=ds.regions)
    tasks = build_tasks(gappy, by='region', min_per_class=5, progress=False)
    assert all(np.isfinite(t.x).all() for t in tasks)
    mean, std = tasks.stats.mean, tasks.stats.std
    assert np.isclose(mean[4], np.nanmean(x[..., 4]), rtol=1e-4)        # statistics ignore the gaps
    found = 0
    for t in tasks:
        for row in np.flatnonzero(t.ids == i_band):
            np.testing.assert_allclose(t.x[row, :, 4], 0, atol=1e-5)     # band mean -> 0 after normalisation
            found += 1
        for row in np.flatnonzero(t.ids == i_optical):
            np.testing.assert_allclose(t.x[row, :, 2:13], 0, atol=1e-5)
            # the other bands were observed and keep their values
            np.testing.assert_allclose(t.x[row, :, 0], (x[i_optical, :, 0] - mean[0]) / std[0], rtol=1e-4, atol=1e-4)
            found += 1
    assert found >= 2


def test_nan_in_a_task_is_an_error():
    x = np.zeros((6, 12, 3), np.float32); x[0, 0, 0] = np.nan
    with pytest.raises(AgrinbError, match='gap-fill'):
        Task('nan', x, [1, 0, 1, 0, 1, 0], x[:0], [], TaskInfo(0, 0))


def test_sample_with_nothing_observed_is_a_clear_error(ds):
    x = ds.x.copy()
    victim = int(np.flatnonzero(~np.isin(ds.regions, HELD))[0])
    x[victim] = np.nan
    empty = PixelDataset.from_arrays(x, ds.lat, ds.lon, ds.labels, regions=ds.regions)
    with pytest.raises(AgrinbError, match=rf'samples \[{victim}\] are NaN for every step and band'):
        build_tasks(empty, exclude_regions=HELD, progress=False)
    togo = int(np.flatnonzero(ds.regions == 'Togo')[0])
    x[victim] = ds.x[victim]; x[togo] = np.nan
    empty = PixelDataset.from_arrays(x, ds.lat, ds.lon, ds.labels, regions=ds.regions)
    with pytest.raises(AgrinbError, match=rf'samples \[{togo}\]'):
        make_test_tasks(empty)


def test_no_series_in_both_support_and_query_of_a_meta_training_episode(ds, tasks):
    "build_tasks repeats 'other crop' rows to balance negatives; episodes are drawn by sample id, so never twice."
    from agrinb.tasks.pixels import prepare_task, draw_episodes
    dup = [t for t in tasks if len(np.unique(t.ids)) < len(t.ids)]
    assert dup, 'balance_negatives repeats rows: some task must hold a series twice'
    td = [prepare_task(t, 'cpu', 18, None, 14) for t in dup[:20]]
    rng, both, twice = np.random.default_rng(0), 0, 0
    for _ in range(30):
        sx, sy, qx, qy = draw_episodes(td, 10, 4, rng)
        for k in range(len(td)):
            s, q = sx[k].reshape(len(sx[k]), -1).numpy(), qx[k].reshape(len(qx[k]), -1).numpy()
            both += int((s[:, None] == q[None]).all(-1).any())            # a real series is never repeated exactly
            twice += int(len(np.unique(s, axis=0)) < len(s) or len(np.unique(q, axis=0)) < len(q))
    assert both == 0, f'{both} of {30 * len(td)} episodes hold one series in both the support and the query set'
    assert twice == 0, f'{twice} episodes hold one series twice in a set'
    for t in dup[:20]:                                                  # the Task's own sampler: disjoint by id too
        e = t.episode(10, 4, rng=1)
        assert not set(e.support_ids) & set(e.query_ids) and len(set(e.support_ids)) == 20
