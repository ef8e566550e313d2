"""`python -m devstack up|down|status`: the local stack in the background (devstack/control.py)."""

from devstack.control import main

raise SystemExit(main())
