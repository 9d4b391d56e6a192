"""``python -m tests.fakeengine <real engine command...>``."""

from tests.fakeengine.engine import main

raise SystemExit(main())
