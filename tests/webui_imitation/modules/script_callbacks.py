callbacks = {"ui_settings": [], "model_loaded": [], "before_ui": [], "app_started": [], "image_saved": [],
             "after_component": []}


def on_ui_settings(callback, *, name=None):
    callbacks["ui_settings"].append(callback)


def on_model_loaded(callback, *, name=None):
    callbacks["model_loaded"].append(callback)


def on_before_ui(callback, *, name=None):
    callbacks["before_ui"].append(callback)


def on_app_started(callback, *, name=None):
    callbacks["app_started"].append(callback)


class ImageSaveParams:
    def __init__(self, image, p, filename, pnginfo):
        self.image, self.p, self.filename, self.pnginfo = image, p, filename, pnginfo


def on_image_saved(callback, *, name=None):
    callbacks["image_saved"].append(callback)


def image_saved_callback(params):
    for callback in callbacks["image_saved"]:
        callback(params)


def model_loaded_callback(sd_model):
    """sd_models.load_model calls it once a checkpoint is loaded (reForge and Forge Classic too)."""
    for callback in callbacks["model_loaded"]:
        callback(sd_model)


def on_after_component(callback, *, name=None):
    callbacks["after_component"].append(callback)


def after_component_callback(component, **kwargs):
    for callback in callbacks["after_component"]:
        callback(component, **kwargs)
