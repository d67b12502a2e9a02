"""``python -m syncer.devconsul``: the same as ``syncer dev-consul``."""

from syncer.devconsul.cli import main

raise SystemExit(main())
