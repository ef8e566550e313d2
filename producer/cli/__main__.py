"""`python -m producer.cli`: the same program as the `certstate` console script."""

from producer.cli.program import main

raise SystemExit(main())
