# The README's two commands. Each sets up .venv/ (idempotent: seconds once done) and then runs.
# MMCV=full make ... sets up the compiled mmcv instead of mmcv-lite (tools/setup_env.sh).
.PHONY: setup demo test env

setup:
	bash tools/setup_env.sh

demo: setup
	.venv/bin/python -m convnext_dense demo

test: setup
	.venv/bin/python -m pytest

env: setup
	.venv/bin/python -m convnext_dense env
