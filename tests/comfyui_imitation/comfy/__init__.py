"""The parts of ComfyUI's comfy package the pack and its tests touch (a125cd84); see the README."""
