from raylab.cli import main

raise SystemExit(main())
