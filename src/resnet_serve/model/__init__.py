"""A model becomes files: weights (:mod:`.weights`), the checked ONNX export and its card (:mod:`.build`,
:mod:`.export`), int8 quantization (:mod:`.quantize`) and its agreement with fp32 (:mod:`.agreement`)."""
