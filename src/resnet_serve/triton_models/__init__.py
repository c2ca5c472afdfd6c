"""``model.py`` files that ``repository.py`` installs into the Triton model repository."""
