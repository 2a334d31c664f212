from carbontrack.devcluster.demo import main

raise SystemExit(main())
