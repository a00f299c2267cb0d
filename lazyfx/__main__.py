from lazyfx.cli import main

raise SystemExit(main())
