"""Tests of the shards/ stage."""
