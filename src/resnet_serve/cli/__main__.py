import sys

from resnet_serve.cli import main

sys.exit(main())
