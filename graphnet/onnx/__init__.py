"""caffe2.python.onnx: only the frontend's entry points, which say clearly that
graphnet does not convert Caffe2 nets to ONNX (spec §2.17)."""
