"""Test doubles. Never used by a default build: params.yaml must name them explicitly."""
