.PHONY: setup demo test bench protos test-faults test-image

setup:
	scripts/setup

demo:
	scripts/demo

test:
	scripts/test

protos:
	scripts/build-protos

test-image:
	scripts/test-image

test-faults:
	scripts/setup
	.venv/bin/python -m pytest -p no:cacheprovider -m faults tests/faults

bench:
	scripts/setup
	.venv/bin/pip install -q -e '.[dev,bench]'
	.venv/bin/python -m bench
