"agrinb.models subpackage (modules are exported from nbs/)."
