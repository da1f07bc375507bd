"""ComfyUI's folder_paths.py (a125cd84), what the pack and the tests use. ``set_base_path`` stands for ComfyUI's
start in a folder of its own (there ``base_path`` is the folder of main.py, fixed at import)."""

from __future__ import annotations

import os
from collections.abc import Collection

supported_pt_extensions: set[str] = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
folder_names_and_paths: dict[str, tuple[list[str], set[str]]] = {}
base_path = models_dir = input_directory = ""


def set_base_path(path: str) -> None:
    global base_path, models_dir, input_directory
    base_path = path
    models_dir = os.path.join(base_path, "models")
    input_directory = os.path.join(base_path, "input")
    folder_names_and_paths.clear()
    folder_names_and_paths["checkpoints"] = ([os.path.join(models_dir, "checkpoints")], supported_pt_extensions)
    folder_names_and_paths["configs"] = ([os.path.join(models_dir, "configs")], [".yaml"])
    folder_names_and_paths["vae"] = ([os.path.join(models_dir, "vae")], supported_pt_extensions)
    folder_names_and_paths["custom_nodes"] = ([os.path.join(base_path, "custom_nodes")], set())


def map_legacy(folder_name: str) -> str:
    legacy = {"unet": "diffusion_models", "clip": "text_encoders"}
    return legacy.get(folder_name, folder_name)


def get_input_directory() -> str:
    return input_directory


def annotated_filepath(name: str) -> tuple[str, str | None]:
    if name.endswith("[input]"):
        return name[:-8], get_input_directory()
    return name, None


def get_annotated_filepath(name: str, default_dir: str | None = None) -> str:
    name, base_dir = annotated_filepath(name)
    if base_dir is None:
        base_dir = default_dir if default_dir is not None else get_input_directory()
    return os.path.join(base_dir, name)


def add_model_folder_path(folder_name: str, full_folder_path: str, is_default: bool = False) -> None:
    folder_name = map_legacy(folder_name)
    if folder_name in folder_names_and_paths:
        paths, _exts = folder_names_and_paths[folder_name]
        if full_folder_path in paths:
            if is_default and paths[0] != full_folder_path:
                paths.remove(full_folder_path)
                paths.insert(0, full_folder_path)
        elif is_default:
            paths.insert(0, full_folder_path)
        else:
            paths.append(full_folder_path)
    else:
        folder_names_and_paths[folder_name] = ([full_folder_path], set())


def get_folder_paths(folder_name: str) -> list[str]:
    folder_name = map_legacy(folder_name)
    return folder_names_and_paths[folder_name][0][:]


def filter_files_extensions(files: Collection[str], extensions: Collection[str]) -> list[str]:
    return sorted(f for f in files if os.path.splitext(f)[-1].lower() in extensions or len(extensions) == 0)


def get_full_path(folder_name: str, filename: str) -> str | None:
    folder_name = map_legacy(folder_name)
    if folder_name not in folder_names_and_paths:
        return None
    filename = os.path.relpath(os.path.join("/", filename), "/")
    for x in folder_names_and_paths[folder_name][0]:
        full_path = os.path.join(x, filename)
        if os.path.isfile(full_path):
            return full_path
    return None


def get_full_path_or_raise(folder_name: str, filename: str) -> str:
    full_path = get_full_path(folder_name, filename)
    if full_path is None:
        raise FileNotFoundError(f"Model in folder '{folder_name}' with filename '{filename}' not found.")
    return full_path


def get_filename_list(folder_name: str) -> list[str]:
    """Without the cache ComfyUI keeps (invalidated by folder mtimes): the same answer, found every time."""
    folder_name = map_legacy(folder_name)
    folders, extensions = folder_names_and_paths[folder_name]
    found = set()
    for folder in folders:
        for dirpath, subdirs, filenames in os.walk(folder, followlinks=True, topdown=True):
            subdirs[:] = [d for d in subdirs if d != ".git"]
            found.update(os.path.relpath(os.path.join(dirpath, f), folder) for f in filenames)
    return sorted(filter_files_extensions(found, extensions))
