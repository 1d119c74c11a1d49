import sys

from culturemanager.cli import main

sys.exit(main())
