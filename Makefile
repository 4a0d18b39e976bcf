# The README's two commands. Each sets up .venv/ (idempotent: seconds once done) and then runs.
.PHONY: setup demo test env

setup:
	bash tools/setup_env.sh

demo: setup
	.venv/bin/python -m convnext_dense demo

test: setup
	.venv/bin/python -m pytest

env: setup
	.venv/bin/python -m convnext_dense env
