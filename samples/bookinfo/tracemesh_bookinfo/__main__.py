import sys

from tracemesh_bookinfo.server import main

sys.exit(main())
