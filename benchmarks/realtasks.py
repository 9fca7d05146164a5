"""Spatial few-shot tasks from real samples and from the synthetic data, shared by the benchmarks (not a test).

Algae blooms (`../shared/data/presto_algae_blooms`, 1,122 samples of (12, 18) series): regions are KMeans clusters
of lat/lon; a binary task asks "severity >= t" (targets run 1..5) within one region, for t in `thresholds`.
Synthetic: crop / non-crop per region of `agrinb.data.synthetic.make_dataset`.
Each task is a dict: name, idx (rows of the arrays), y (0/1), info (the 13-vector or a TaskInfo), region."""
from pathlib import Path
import numpy as np
from agrinb.data.geo import to_sphere
from agrinb.tasks.pixels import TaskInfo, Task, draw_by_id


def shared_data(default=None)->Path:
    "The shared data folder: `default`, else `../shared/data` beside the worktree, else /work/shared/data."
    for p in (default, Path(__file__).resolve().parent.parent / '..' / 'shared' / 'data', Path('/work/shared/data')):
        if p is not None and Path(p).exists(): return Path(p)
    return Path('/work/shared/data')


def threshold_info(lat, lon, t)->np.ndarray:
    "Task vector: the region's unit-sphere position, then a one-hot of the severity threshold in the 10 group slots."
    v = np.zeros(13, np.float32); v[:3] = to_sphere(lat, lon); v[3 + t - 2] = 1
    return v


def algae_arrays(shared)->dict|None:
    "The algae-bloom arrays (x (N, 12, 18) float32, latlon, month, dynamic_world, target), or None when absent."
    d = Path(shared) / 'presto_algae_blooms'
    if not d.exists(): return None
    ld = lambda n: np.load(d / f'{n}.npy')
    return dict(x=ld('s1_s2_era5_srtm').astype(np.float32), latlon=ld('latlon'), month=ld('month'),
                dynamic_world=ld('dynamic_world'), target=ld('target'))


def algae_tasks(arr:dict, n_regions:int=8, thresholds=(2, 3, 4), min_class:int=5, seed:int=0)->dict:
    "{(region, threshold): task} for every region x threshold with at least `min_class` of each class."
    from sklearn.cluster import KMeans
    ll, sev = arr['latlon'], arr['target']
    reg = KMeans(n_regions, random_state=seed, n_init=10).fit_predict(ll)
    tasks = {}
    for r in range(n_regions):
        m = np.flatnonzero(reg == r)
        for th in thresholds:
            y = (sev[m] >= th).astype(int)
            if min(y.sum(), len(y) - y.sum()) < min_class: continue
            c = ll[m].mean(0)
            tasks[r, th] = dict(name=f'region{r}>={th}', idx=m, y=y, info=threshold_info(c[0], c[1], th), region=r)
    return tasks


def synthetic_tasks(ds, min_class:int=5)->dict:
    "{region: task}: crop vs non-crop in each region of a `make_dataset` PixelDataset."
    tasks = {}
    for r in sorted(set(ds.regions)):
        m = np.flatnonzero(ds.regions == r); y = ds.is_crop[m].astype(int)
        if min(y.sum(), len(y) - y.sum()) < min_class: continue
        tasks[r] = dict(name=str(r), idx=m, y=y, info=TaskInfo(float(ds.lat[m].mean()), float(ds.lon[m].mean())), region=r)
    return tasks


def support_draw(y:np.ndarray, k:int, seed:int)->tuple:
    "k positives + k negatives (THE sampler, `draw_by_id`) and the rest of the task as the query set."
    s, _ = draw_by_id(y, np.arange(len(y)), seed, k)
    return s, np.setdiff1d(np.arange(len(y)), s)


def as_task(t:dict, x:np.ndarray, s:np.ndarray, q:np.ndarray)->Task:
    "A `Task` of rows `s` (support) and `q` (query) of the task's series `x` (already indexed by `t['idx']`)."
    return Task(t['name'], x[s], t['y'][s], x[q], t['y'][q], t['info'])
