"""Where a fitted model is kept: the model file (``model_file``) and the parameters
stored with their types (``stored_params``).
"""
