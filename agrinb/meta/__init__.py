"agrinb.meta: the meta core and the learners (modules are exported from nbs/; the face is `agrinb._lazy`)."
from agrinb import _lazy
__getattr__, __dir__, __all__ = _lazy(__name__, {
    'Learner': '.core', 'Predictor': '.core', 'fit_loop': '.core', 'inner_loop': '.core',
    'MAML': '.maml', 'TIML': '.timl', 'MAMLInfo': '.timl', 'Pretrained': '.baselines', 'RandomInit': '.baselines',
    'RandomForest': '.baselines', 'ProtoNet': '.baselines', 'PrestoProbe': '.presto', 'PrestoEnsemble': '.presto',
    'TileLearner': '.tiles', 'pretrained_timl': '.pretrained', 'init_distributed': '.distributed'})
