class AlwaysVisible:
    pass


class Script:
    is_txt2img = False
    is_img2img = False
    infotext_fields = None
    filename = "scripts/depth2img.py"
    on_after_component_elem_id = None

    def on_after_component(self, callback, *, elem_id):
        self.on_after_component_elem_id = (self.on_after_component_elem_id or []) + [(elem_id, callback)]

    def postprocess_image_after_composite(self, p, pp, *args):
        pass

    def elem_id(self, item_id):
        return f"{'img2img' if self.is_img2img else 'txt2img'}_depth-to-image_{item_id}"


class ScriptClassData:
    def __init__(self, script_class, path, basedir, module):
        self.script_class, self.path, self.basedir, self.module = script_class, path, basedir, module


scripts_data = []


class OnComponent:
    def __init__(self, component):
        self.component = component


def component_made(scripts, component, **kwargs):
    """What gradio_extensons.py does as each component is made: the callbacks of script_callbacks first, then
    each script's ``on_after_component`` callbacks for the component's elem id (ScriptRunner.after_component)."""
    from modules import script_callbacks

    script_callbacks.after_component_callback(component, **kwargs)
    for script in scripts:
        for elem_id, callback in script.on_after_component_elem_id or []:
            if elem_id == kwargs.get("elem_id"):
                callback(OnComponent(component))
