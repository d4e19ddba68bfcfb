"""The relay (`podnet relay`): one process lists and watches what every agent's informers follow
— Pods, Namespaces, Nodes, NetworkPolicies, ClusterNetworkPolicies — once, and serves it to many
agents in the Kubernetes API's own list/watch wire format, each object trimmed to what an agent
reads.  What Calico's Typha is for calico-node: in a 5000-node cluster the API server then serves
a few dozen relays instead of 5000 agents, and each agent reads a twentieth of the bytes."""
