import sys

from lib_depth2img.cli import main

sys.exit(main())
