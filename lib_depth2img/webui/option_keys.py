"""The extension's settings in the WebUI's Settings tab, by key: registered in ui.py, read where they act."""

MOVE_TO_CPU = "depth2img_move_to_cpu"
SAVE_DEPTH_MAPS = "depth2img_save_depth_maps"
