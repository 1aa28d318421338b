from gradcli.cli import main

raise SystemExit(main())
