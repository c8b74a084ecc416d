import sys

from pqfile.cli import main

sys.exit(main())
