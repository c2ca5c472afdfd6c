"""Bytes become tensors: untrusted image bytes checked (:mod:`.checks`), decoded and preprocessed on
the CPU (:mod:`.preprocess`) or a GPU (:mod:`.preprocess_gpu`, :mod:`.gpu_decode`), and torchvision's
own eval transform they are measured against (:mod:`.reference`)."""
