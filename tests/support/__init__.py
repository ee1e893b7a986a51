"""Test doubles shared by unit, integration and benchmark code."""
