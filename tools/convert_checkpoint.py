"""``convnext-dense convert`` as a script: see convnext_dense/cli/convert.py."""
import sys

from convnext_dense.cli.main import main

if __name__ == '__main__':
    sys.exit(main(['convert', *sys.argv[1:]]))
