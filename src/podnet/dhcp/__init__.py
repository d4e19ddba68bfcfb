"""podnet-dhcp: pod addresses from the underlay's DHCP server, leases kept by the agent."""

# options asked for unless the config's `request` says skipDefault: subnet mask, router, DNS
# servers, domain, static routes, lease time, server id, T1, T2, classless static routes
DEFAULT_REQUEST = (1, 3, 6, 15, 33, 51, 54, 58, 59, 121)
