from facesearch.cli.main import main

raise SystemExit(main())
