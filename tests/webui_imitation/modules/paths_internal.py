models_path = "models"  # tests point these at their own folders
extensions_dir = "extensions"
