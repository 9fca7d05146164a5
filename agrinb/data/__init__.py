"agrinb.data: pixel series, CropHarvest files, rasters, tiles and multi-source samples (modules are exported from nbs/; the face is `agrinb._lazy`)."
from agrinb import _lazy
__getattr__, __dir__, __all__ = _lazy(__name__, {
    'PixelDataset': '.pixels', 'BandStats': '.pixels', 'CROPHARVEST_BANDS': '.pixels', 'concat_datasets': '.pixels',
    'read_cropharvest': '.cropharvest', 'engineer_tif': '.cropharvest', 'load_raster': '.raster',
    'check_raster': '.raster', 'make_dataset': '.synthetic', 'make_datacube': '.synthetic', 'country_of': '.geo',
    'read_sen12ms': '.tiles', 'read_deepglobe': '.tiles', 'TileSet': '.tiles', 'MappingDataset': '.h5maps'})
