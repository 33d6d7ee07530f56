from diffclosure.cli import main

raise SystemExit(main())
