import sys

from ..cli.timeline import main


sys.exit(main())
