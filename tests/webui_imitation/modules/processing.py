"""The img2img/txt2img flow of modules/processing.py, reduced to what the depth path touches.

Same order of calls as v1.10.1, and like its ScriptRunner an exception from a script hook is
reported and swallowed, while ``p.init`` is called unguarded: before_process, init (which builds init_latent and then
image_conditioning through img2img_image_conditioning -> depth2img_image_conditioning),
then per batch process_before_every_sampling and the sampler, then postprocess.
"""

import numpy as np
import torch
from PIL import Image, ImageFilter

from modules import errors, images, script_callbacks, shared


def run_hook(hook: str, scripts, p, *args, **kwargs):
    """Calls ``hook`` of every script as ``ScriptRunner`` does: an exception is reported and swallowed."""
    for script in scripts:
        try:
            getattr(script, hook)(p, *args, *p.script_args_for(script), **kwargs)
        except Exception:
            errors.report(f"Error running {hook}: {script.filename}", exc_info=True)


class Processed:
    def __init__(self, p, images_list):
        self.images = images_list
        self.infotexts = [f"picture {i}" for i in range(len(images_list))]
        self.index_of_first_image = 0
        self.comments = "".join(f"{comment}\n" for comment in p.comments)


class StableDiffusionProcessingImg2Img:
    def __init__(self, init_images, width, height, batch_size=1, n_iter=1, mask=None, inpainting_fill=0,
                 inpaint_full_res=False, inpaint_full_res_padding=0, resize_mode=0, script=None, script_args=()):
        self.init_images, self.width, self.height = init_images, width, height
        self.batch_size, self.n_iter = batch_size, n_iter
        self.image_mask, self.inpainting_fill = mask, inpainting_fill
        self.inpaint_full_res, self.inpaint_full_res_padding = inpaint_full_res, inpaint_full_res_padding
        self.resize_mode = resize_mode
        self.extra_generation_params, self.comments = {}, {}
        self.script, self.script_args = script, list(script_args)
        self.image_conditioning = self.init_latent = None
        self.sampled_with = []

    @property
    def sd_model(self):
        return shared.sd_model

    def comment(self, text):
        self.comments[text] = 1

    def init(self, all_prompts, all_seeds, all_subseeds):
        crop_region = None
        if self.image_mask is not None and self.inpaint_full_res:
            x1, y1, x2, y2 = self.image_mask.getbbox()
            pad = self.inpaint_full_res_padding
            crop_region = (max(x1 - pad, 0), max(y1 - pad, 0), x2 + pad, y2 + pad)
            self.paste_to = (crop_region[0], crop_region[1], crop_region[2] - crop_region[0],
                             crop_region[3] - crop_region[1])
        laid_out = []
        for picture in self.init_images:
            picture = images.flatten(picture, shared.opts.img2img_background_color)
            if crop_region is None and self.resize_mode != 3:
                picture = images.resize_image(self.resize_mode, picture, self.width, self.height)
            mask = self.image_mask
            if crop_region is not None:
                picture = images.resize_image(2, picture.crop(crop_region), self.width, self.height)
                mask = images.resize_image(2, mask.crop(crop_region).convert("RGB"), self.width, self.height)
            elif mask is not None:
                mask = mask.convert("RGB").resize((self.width, self.height))
            if mask is not None and self.inpainting_fill != 1:
                blurred = picture.filter(ImageFilter.GaussianBlur(64))
                picture = Image.composite(blurred, picture, mask.convert("L"))
            laid_out.append(np.moveaxis(np.asarray(picture, dtype=np.float32) / 255.0, 2, 0))
        if len(laid_out) == 1:
            batch = np.repeat(laid_out[0][None], self.batch_size, axis=0)
        else:
            self.batch_size = len(laid_out)
            batch = np.stack(laid_out)
        image = torch.from_numpy(batch)
        self.init_latent = self.sd_model.encode(image * 2 - 1)
        self.image_conditioning = self.img2img_image_conditioning(image * 2 - 1, self.init_latent)

    def img2img_image_conditioning(self, source_image, latent_image, image_mask=None, round_image_mask=True):
        if getattr(self.sd_model, "depth_model", None) is not None:
            return self.depth2img_image_conditioning(source_image)
        return latent_image.new_zeros(latent_image.shape[0], 5, 1, 1)

    def depth2img_image_conditioning(self, source_image):
        """The native path: one MiDaS forward on the first picture, normalised over the batch."""
        self.sd_model.native_depth_calls += 1
        return torch.zeros(source_image.shape[0], 1, *self.init_latent.shape[-2:])

    def sample(self, scripts):
        run_hook("process_before_every_sampling", scripts, self, x=self.init_latent)
        self.sampled_with.append(self.image_conditioning)
        return self.init_latent

    def script_args_for(self, script):
        return self.script_args


class StableDiffusionProcessingTxt2Img(StableDiffusionProcessingImg2Img):
    def init(self, all_prompts, all_seeds, all_subseeds):
        pass


def process_images(p, scripts, outpath=None):
    """``outpath``: save each picture there as the WebUI does (``<number>-<seed>.png``), else save nothing."""
    run_hook("before_process", scripts, p)
    run_hook("process", scripts, p)  # the model is loaded between the two (on Forge, lazily)
    p.init([], [], [])
    pictures = []
    for _ in range(p.n_iter):
        p.sample(scripts)
        for i in range(p.batch_size):
            p.batch_index = i
            picture = Image.new("RGB", (p.width, p.height))
            run_hook("postprocess_image_after_composite", scripts, p, None)
            if outpath is not None:
                filename = f"{outpath}/{len(pictures):05}-1234.png"
                picture.save(filename)
                script_callbacks.image_saved_callback(script_callbacks.ImageSaveParams(picture, p, filename, {}))
            pictures.append(picture)
    processed = Processed(p, pictures)
    run_hook("postprocess", scripts, p, processed)
    return processed
