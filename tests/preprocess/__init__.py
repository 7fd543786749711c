"""Tests of the preprocess/ stage."""
