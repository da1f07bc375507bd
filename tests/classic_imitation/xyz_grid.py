"""extensions-builtin/xyz/scripts/xyz_grid.py of Forge Classic: imports AxisOption alone; ``axis_options`` is
lib_xyz's list of built-in axes. The WebUI's script loader runs it as a module named "xyz_grid.py"."""

from lib_xyz.classes import AxisOption  # noqa: F401  (what the module has; the other classes it lacks)
from modules import scripts

axis_options = []


class XYZ(scripts.Script):
    def title(self):
        return "X/Y/Z Plot"
