callbacks = {"ui_settings": [], "model_loaded": [], "before_ui": [], "app_started": []}


def on_ui_settings(callback, *, name=None):
    callbacks["ui_settings"].append(callback)


def on_model_loaded(callback, *, name=None):
    callbacks["model_loaded"].append(callback)


def on_before_ui(callback, *, name=None):
    callbacks["before_ui"].append(callback)


def on_app_started(callback, *, name=None):
    callbacks["app_started"].append(callback)
