"""modules/cmd_args.py with ldm_patched/modules/args_parser.py of Forge Classic: no --medvram, no --lowvram
(its memory management has --always-low-vram and kin instead); only the flags the extension could read."""

import argparse

cmd_opts = argparse.Namespace(always_cpu=True, always_low_vram=False, always_no_vram=False, api=True,
                              no_half=False)
