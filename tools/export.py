import sys
from convnext_dense.cli.export import main
if __name__ == '__main__':
    sys.exit(main())
