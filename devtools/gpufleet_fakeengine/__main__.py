"""``python -m gpufleet_fakeengine <real engine command...>``."""

from gpufleet_fakeengine.engine import main

raise SystemExit(main())
