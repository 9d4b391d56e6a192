"""Unit tests of the operator core (#5)."""
