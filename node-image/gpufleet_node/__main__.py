"""``python -m gpufleet_node``: same as the ``gpufleet-node`` console script."""

from gpufleet_node.cli import main

raise SystemExit(main())
