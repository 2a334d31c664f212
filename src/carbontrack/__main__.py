from carbontrack.cli import main

raise SystemExit(main())
