"""Address management: ranges, the allocator, and the stores it runs over."""
