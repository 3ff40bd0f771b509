.PHONY: setup demo test bench protos

setup:
	scripts/setup

demo:
	scripts/demo

test:
	scripts/test

protos:
	scripts/build-protos
