"""`python -m gpufleet` is the same as the `gpufleet` command."""

from gpufleet.cli import main

raise SystemExit(main())
