"""``python -m stvm`` entry point."""

from stvm.cli import main

raise SystemExit(main())
