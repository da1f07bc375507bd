"""The adapter: the only package that imports the WebUI (``modules.*``, ``ldm``, gradio).

It translates between the WebUI's processing objects and the core's tensors and holds no
depth algorithm of its own.
"""
