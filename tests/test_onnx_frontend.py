"""caffe2.python.onnx.frontend: importable without the onnx package; keeps
Caffe2's argument checks (error text golden from real Caffe2 1.10.2 running
dlrm_s_caffe2.py --save-onnx), then says clearly that conversion is unsupported."""

import pytest

from graphnet import compat, core
from graphnet.onnx import frontend
from graphnet.proto import caffe2_pb2


def _nets():
    init = core.Net("init")
    init.ConstantFill([], "const_one", shape=[1], value=1.0)
    init.ConstantFill([], "other", shape=[1], value=2.0)
    net = core.Net("predict")
    net.Relu("x", "y")
    net.Proto().external_input.extend(["tril"])
    return net.Proto(), init.Proto()


def test_import_through_the_caffe2_alias():
    compat.install()
    try:
        import caffe2.python.onnx.frontend as c2_frontend
        assert c2_frontend is frontend
        assert c2_frontend.caffe2_net_to_onnx_model == \
            frontend.Caffe2Frontend.caffe2_net_to_onnx_model
    finally:
        compat.uninstall()


def test_missing_value_info_fails_as_in_caffe2():
    pnet, inet = _nets()
    with pytest.raises(RuntimeError, match="^Could not find value info of inputs: tril$"):
        frontend.Caffe2Frontend().caffe2_net_to_onnx_model(
            pnet, inet, {"x": (1, (2,)), "const_one": (1, (1,))})
    # as Caffe2, the fills of blobs with value info left the init net first
    assert [op.output[0] for op in inet.op] == ["other"]


def test_conversion_is_not_supported():
    pnet, inet = _nets()
    value_info = {"x": (1, (2,)), "tril": (7, (6,))}
    for convert in (frontend.caffe2_net_to_onnx_model, frontend.caffe2_net_to_onnx_graph):
        with pytest.raises(NotImplementedError, match="does not convert Caffe2 nets to "
                                                      "ONNX.*Fix:"):
            convert(pnet, inet, value_info)
    with pytest.raises(NotImplementedError, match="caffe2_init_net_to_initializer"):
        frontend.caffe2_init_net_to_initializer(inet)


def test_value_info_must_be_a_dict():
    with pytest.raises(ValueError, match="name -> \\(type, shape\\) dictionary"):
        frontend.caffe2_net_to_onnx_graph(caffe2_pb2.NetDef(), None, [("x", 1)])
