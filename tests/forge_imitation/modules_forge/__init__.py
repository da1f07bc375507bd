"""Forge's own package: its presence is what tells a host module it runs in Forge."""
