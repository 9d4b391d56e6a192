"""`python -m gpufleet_devcluster.real [build|path|check]`: build the control plane binaries."""

import sys

from gpufleet_devcluster.real.build import main

sys.exit(main())
