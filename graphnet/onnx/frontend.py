"""caffe2.python.onnx.frontend: Caffe2Frontend's entry points without the converter.

Importing works without the `onnx` package (Caffe2's module imported it at the
top; a script that also imports `onnx` fails the same way when it is missing).
The argument checks Caffe2 ran before converting are kept, so a missing value
info fails with Caffe2's error; any conversion then raises NotImplementedError
(spec §2.17). Imports re only.
"""

import re

__all__ = ["Caffe2Frontend", "caffe2_net_to_onnx_graph", "caffe2_net_to_onnx_model",
           "caffe2_init_net_to_initializer", "ssa_rewrite"]

_NOT_SUPPORTED = (
    "graphnet does not convert Caffe2 nets to ONNX (caffe2.python.onnx.frontend.%s). "
    "Caffe2's converter also had no ONNX mapping for DLRM's SparseLengthsSum. Fix: save "
    "the NetDef instead (e.g. --save-proto-types-shapes in dlrm_s_caffe2.py), or export "
    "the model to ONNX from PyTorch with torch.onnx.export.")


class Caffe2Frontend(object):
    """Caffe2's Caffe2 -> ONNX converter interface; conversions are not supported."""

    target_opset_version = 9

    @classmethod
    def caffe2_net_to_onnx_graph(cls, predict_net, init_net=None, value_info=None):
        if value_info is None:
            value_info = {}
        if not isinstance(value_info, dict):
            raise ValueError('Please pass value_info as a '
                             'name -> (type, shape) dictionary')
        cls._filter_fake_init(init_net, value_info)
        missing = set(predict_net.external_input) - set(value_info.keys())
        if missing:
            raise RuntimeError('Could not find value info of inputs: {}'.format(
                ', '.join(missing)))
        raise NotImplementedError(_NOT_SUPPORTED % "caffe2_net_to_onnx_graph")

    @classmethod
    def caffe2_net_to_onnx_model(cls, *args, **kwargs):
        cls.caffe2_net_to_onnx_graph(*args, **kwargs)
        raise NotImplementedError(_NOT_SUPPORTED % "caffe2_net_to_onnx_model")

    @classmethod
    def caffe2_init_net_to_initializer(cls, init_net):
        raise NotImplementedError(_NOT_SUPPORTED % "caffe2_init_net_to_initializer")

    @classmethod
    def ssa_rewrite(cls, net, init_net, value_info):
        raise NotImplementedError(_NOT_SUPPORTED % "ssa_rewrite")

    @classmethod
    def _filter_fake_init(cls, init_net, value_info):
        """As Caffe2: drop init ops that only fill a blob whose value info is given
        (this edits `init_net` in place, before the checks that may fail)."""
        if init_net:
            fake_inits = [op for op in init_net.op
                          if len(op.output) == 1 and op.output[0] in value_info
                          and re.match("GivenTensor.*Fill|ConstantFill", op.type)]
            for fake_init in fake_inits:
                init_net.op.remove(fake_init)


caffe2_net_to_onnx_graph = Caffe2Frontend.caffe2_net_to_onnx_graph
caffe2_net_to_onnx_model = Caffe2Frontend.caffe2_net_to_onnx_model
caffe2_init_net_to_initializer = Caffe2Frontend.caffe2_init_net_to_initializer
ssa_rewrite = Caffe2Frontend.ssa_rewrite
