"""k controller: router utilisation -> RoutingPolicy.status.k (``planner`` pure, ``controller`` I/O)."""
