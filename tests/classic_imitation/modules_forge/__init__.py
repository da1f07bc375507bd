"""Forge Classic's own package (its presence and version tell a host module which Forge this is)."""
