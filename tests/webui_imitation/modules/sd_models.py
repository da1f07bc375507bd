checkpoint_aliases = {}  # every name the WebUI lists a checkpoint under -> its CheckpointInfo


class CheckpointInfo:
    def __init__(self, filename, title):
        self.filename, self.title = filename, title
