"""Launchers (composition roots): standalone mode in one process, and the local-process fleet."""
