"""WebUI entry point: wiring only; everything happens in lib_depth2img.webui."""

from modules import script_callbacks, scripts

from lib_depth2img.webui import generation, model_loading, ui

model_loading.install_offline_midas_loader()
script_callbacks.on_model_loaded(model_loading.check_loaded_depth_weights)
ui.register_callbacks()


class Depth2ImgScript(scripts.Script):
    def title(self):
        return "Depth-to-image"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        if not is_img2img:
            return []  # txt2img only needs the guard
        controls, self.infotext_fields = ui.build_controls(self.elem_id)
        return controls

    def before_process(self, p, *args):
        if self.is_img2img:
            generation.before_process(p, ui.args_for(p, args))
        else:
            generation.guard_txt2img(p)

    def process_before_every_sampling(self, p, *args, **kwargs):
        generation.process_before_every_sampling(p)

    def postprocess(self, p, processed, *args):
        generation.postprocess(p, processed)
