"""The img2img/txt2img flow of modules/processing.py, reduced to what the depth path touches.

Same order of calls as v1.10.1, and like its ScriptRunner an exception from a script hook is
reported and swallowed, while ``p.init`` is called unguarded: before_process, init (img2img: builds
init_latent and then image_conditioning through img2img_image_conditioning -> depth2img_image_conditioning),
then per batch process_before_every_sampling and the sampler (txt2img: asks txt2img_image_conditioning,
and for Hires fix's second pass txt2img_ or img2img_image_conditioning as the upscaler decides), then
postprocess.
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


def unet_input(sd_model, x, image_conditioning):
    """What the sampler feeds the UNet of a depth model: latent and conditioning side by side, 5 channels."""
    if getattr(sd_model, "depth_model", None) is None:
        return x
    if image_conditioning.shape[1] != 1 or image_conditioning.shape[-2:] != x.shape[-2:]:
        raise RuntimeError(f"Given groups=1, weight of size [320, 5, 3, 3], expected input to have 5 channels, got "
                           f"latent {tuple(x.shape)} and conditioning {tuple(image_conditioning.shape)}")
    return torch.cat([x, image_conditioning.to(x.dtype)], dim=1)


class StableDiffusionProcessingTxt2Img:
    """txt2img and its Hires fix, as v1.10.1 asks for the image conditioning of each pass."""

    def __init__(self, width, height, batch_size=1, n_iter=1, enable_hr=False, hr_scale=2.0, hr_upscaler="Latent",
                 hr_resize_x=0, hr_resize_y=0, script=None, script_args=()):
        self.width, self.height, self.batch_size, self.n_iter = width, height, batch_size, n_iter
        self.enable_hr, self.hr_scale, self.hr_upscaler = enable_hr, hr_scale, hr_upscaler
        self.hr_resize_x, self.hr_resize_y = hr_resize_x, hr_resize_y
        self.extra_generation_params, self.comments = {}, {}
        self.script, self.script_args = script, list(script_args)
        self.is_hr_pass, self.truncate_x, self.truncate_y = False, 0, 0
        self.hr_upscale_to_x = self.hr_upscale_to_y = 0
        self.sampled_with = []  # (pass, UNet input) of each sampling

    sd_model = StableDiffusionProcessingImg2Img.sd_model
    comment = StableDiffusionProcessingImg2Img.comment
    script_args_for = StableDiffusionProcessingImg2Img.script_args_for

    def unet_input(self, x, image_conditioning):
        return unet_input(self.sd_model, x, image_conditioning)

    def init(self, all_prompts, all_seeds, all_subseeds):
        """calculate_target_resolution: a scale, or a target size upscaled past in one side and truncated."""
        self.latent_scale_mode = {"mode": "bilinear"} if self.hr_upscaler.startswith("Latent") else None
        if not self.enable_hr:
            return
        if not self.hr_resize_x and not self.hr_resize_y:
            self.hr_upscale_to_x = int(self.width * self.hr_scale)
            self.hr_upscale_to_y = int(self.height * self.hr_scale)
            return
        target_w, target_h = self.hr_resize_x, self.hr_resize_y
        if self.hr_resize_x / self.hr_resize_y > self.width / self.height:
            self.hr_upscale_to_x, self.hr_upscale_to_y = self.hr_resize_x, self.hr_resize_x * self.height // self.width
        else:
            self.hr_upscale_to_x, self.hr_upscale_to_y = self.hr_resize_y * self.width // self.height, self.hr_resize_y
        self.truncate_x = (self.hr_upscale_to_x - target_w) // 8
        self.truncate_y = (self.hr_upscale_to_y - target_h) // 8

    def txt2img_image_conditioning(self, x, width=None, height=None):
        """For a model with conditioning_key 'hybrid', as the depth model's: the inpainting models' 5 channels."""
        return x.new_ones(x.shape[0], 5, *x.shape[-2:])

    def img2img_image_conditioning(self, source_image, latent_image, image_mask=None, round_image_mask=True):
        if getattr(self.sd_model, "depth_model", None) is not None:
            self.sd_model.native_depth_calls += 1  # the native path: depth re-estimated from source_image
            return torch.zeros(source_image.shape[0], 1, *latent_image.shape[-2:])
        return latent_image.new_zeros(latent_image.shape[0], 5, 1, 1)

    def sample(self, scripts):
        x = torch.randn(self.batch_size, 4, self.height // 8, self.width // 8)
        run_hook("process_before_every_sampling", scripts, self, x=x)
        self.sampled_with.append(("first", self.unet_input(x, self.txt2img_image_conditioning(x))))
        if not self.enable_hr:
            return x
        decoded = None if self.latent_scale_mode is not None else torch.rand(self.batch_size, 3, self.height,
                                                                               self.width)
        return self.sample_hr_pass(x, decoded, scripts)

    def sample_hr_pass(self, samples, decoded_samples, scripts):
        self.is_hr_pass = True
        size = (self.hr_upscale_to_y // 8, self.hr_upscale_to_x // 8)
        if self.latent_scale_mode is not None:
            samples = torch.nn.functional.interpolate(samples, size=size, mode="bilinear")
            if shared.opts.inpainting_mask_weight < 1.0:
                decoded = torch.rand(samples.shape[0], 3, size[0] * 8, size[1] * 8)
                image_conditioning = self.img2img_image_conditioning(decoded, samples)
            else:
                image_conditioning = self.txt2img_image_conditioning(samples)
        else:  # a picture upscaler: the decoded first pass upscaled, in [0, 1], encoded again
            decoded = torch.nn.functional.interpolate(decoded_samples, size=(size[0] * 8, size[1] * 8))
            samples = torch.nn.functional.avg_pool2d(decoded, 8).repeat(1, 2, 1, 1)[:, :4]
            image_conditioning = self.img2img_image_conditioning(decoded, samples)
        samples = samples[:, :, self.truncate_y // 2:samples.shape[2] - (self.truncate_y + 1) // 2,
                          self.truncate_x // 2:samples.shape[3] - (self.truncate_x + 1) // 2]
        run_hook("process_before_every_sampling", scripts, self, x=samples)
        self.sampled_with.append(("hires", self.unet_input(samples, image_conditioning)))
        return samples


def process_images(p, scripts, outpath=None):
    """``outpath``: save each picture there as the WebUI does (``<number>-<seed>.png``), else save nothing."""
    run_hook("before_process", scripts, p)
    run_hook("process", scripts, p)  # the model is loaded between the two (on Forge, lazily)
    p.init([], [], [])
    pictures = []
    for _ in range(p.n_iter):
        samples = p.sample(scripts)
        for i in range(p.batch_size):
            p.batch_index = i
            picture = Image.new("RGB", (samples.shape[-1] * 8, samples.shape[-2] * 8))
            run_hook("postprocess_image_after_composite", scripts, p, None)
            if outpath is not None:
                filename = f"{outpath}/{len(pictures):05}-1234.png"
                picture.save(filename)
                script_callbacks.image_saved_callback(script_callbacks.ImageSaveParams(picture, p, filename, {}))
            pictures.append(picture)
    processed = Processed(p, pictures)
    run_hook("postprocess", scripts, p, processed)
    return processed
