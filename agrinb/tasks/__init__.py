"agrinb.tasks subpackage: few-shot tasks (modules are exported from nbs/)."
from .pixels import *
