class OptionInfo:
    def __init__(self, default=None, label="", component=None, component_args=None, onchange=None, section=None,
                 refresh=None, comment_before="", comment_after="", infotext=None, restrict_api=False,
                 category_id=None):
        self.default, self.label, self.section = default, label, section


class Options:
    def __init__(self):
        self.data = {"img2img_background_color": "#ffffff", "inpainting_mask_weight": 1.0}
        self.data_labels = {}

    def add_option(self, key, info):
        self.data_labels[key] = info
        self.data.setdefault(key, info.default)

    def __getattr__(self, item):
        if item in self.data:
            return self.data[item]
        raise AttributeError(item)


opts = Options()
sd_model = None


class CommandLine:
    medvram = lowvram = False


cmd_opts = CommandLine()


def walk_files(path, allowed_extensions=None):
    import os

    for root, _, files in sorted(os.walk(path)):
        for filename in sorted(files):
            if allowed_extensions is None or os.path.splitext(filename)[1].lower() in allowed_extensions:
                yield os.path.join(root, filename)
