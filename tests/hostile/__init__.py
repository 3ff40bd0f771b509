"""Hostile input: bad bytes, headers, keys, transforms and cluster operations."""
