from vaxreport.cli import main

raise SystemExit(main())
