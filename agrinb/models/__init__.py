"agrinb.models: the networks (modules are exported from nbs/; the face is `agrinb._lazy`)."
from agrinb import _lazy
__getattr__, __dir__, __all__ = _lazy(__name__, {
    'LSTMClassifier': '.lstm', 'TaskEncoder': '.lstm', 'TileCNN': '.cnn', 'UNet': '.cnn', 'Presto': '.presto',
    'MultiSourceMapper': '.swin3d'})
