"""Kubernetes NetworkPolicy for the pods of this node, enforced on nftables by the agent.

  spec.py      policies, selectors and peers parsed once into typed values (the API's JSON in)
  cluster.py   what the engine knows: pods (labels, IPs, named ports, node), namespaces, policies
  compiler.py  cluster view → the nftables model: named sets of pod IPs per selector, a chain per
               policy, a verdict map from each local pod's IP to its policies' chains
  engine.py    keeps the kernel equal to the model: a pod's churn changes set elements, a policy
               change rewrites its own chain, each change one transaction; admits a pod at CNI
               ADD before it returns (no startup window), fails closed
  watch.py     the API's Pods, Namespaces and NetworkPolicies (list + watch) feeding the engine
"""
