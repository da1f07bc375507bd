"""ComfyUI's node_helpers.py (a125cd84): the one function the pack calls."""


def conditioning_set_values(conditioning, values={}, append=False):  # noqa: B006 (ComfyUI's signature)
    """A new conditioning list: each entry's tensor kept, its options copied with ``values`` set (or, with
    ``append``, added to what is there)."""
    result = []
    for tensor, options in conditioning:
        options = options.copy()
        for key, value in values.items():
            old = options.get(key) if append else None
            options[key] = value if old is None else old + value
        result.append([tensor, options])
    return result
