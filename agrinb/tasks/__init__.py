"agrinb.tasks: few-shot tasks of each data family (modules are exported from nbs/; the face is `agrinb._lazy`)."
from agrinb import _lazy
__getattr__, __dir__, __all__ = _lazy(__name__, {
    'Task': '.pixels', 'TaskInfo': '.pixels', 'TaskList': '.pixels', 'register_crop': '.pixels', 'CROP_GROUPS': '.pixels',
    'FAO_GROUPS': '.pixels', 'TEST_SPEC': '.pixels', 'build_tasks': '.pixels', 'test_tasks': '.pixels',
    'benchmark_tasks': '.pixels', 'Benchmark': '.pixels', 'toy_tasks': '.pixels',
    'TileTask': '.tiles', 'sample_tile_task': '.tiles', 'deepglobe_task': '.tiles', 'meta_split': '.tiles',
    'channel_stats': '.tiles'})
