"""podnet: a CNI network plugin suite with a resident node agent.

Importing this package must stay cheap: no pyroute2, no etcd client here.
"""
__version__ = "0.1.0"
