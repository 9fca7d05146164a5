"agrinb.tasks subpackage (modules are exported from nbs/)."
