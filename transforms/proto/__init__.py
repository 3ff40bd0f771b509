"""Protobuf types the built-in transforms read and write, shipped as descriptor sets."""
