import sys

from etcdpy.frontend.process import main

sys.exit(main())
