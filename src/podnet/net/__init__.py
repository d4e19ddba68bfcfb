"""The only code that touches the kernel (netlink via pyroute2 in rtnl.py, nft, sysctl)."""
