"agrinb.meta subpackage (modules are exported from nbs/)."
