"agrinb.tasks subpackage: few-shot tasks of each data family (modules are exported from nbs/)."
from .pixels import *
from .tiles import *
