"""NameScope and DeviceScope: the only ambient state, read when an op is built.

Thread-local, as in caffe2.python.scope. Imports the proto module only.
"""

import contextlib
import threading

from graphnet.proto import caffe2_pb2

__all__ = ["CurrentNameScope", "CurrentDeviceScope", "NameScope", "DeviceScope",
           "EmptyNameScope", "EmptyDeviceScope", "_NAMESCOPE_SEPARATOR"]

_NAMESCOPE_SEPARATOR = "/"
_threadlocal_scope = threading.local()


def CurrentNameScope():
    """The current name-scope prefix ('' at first; 'a/b/' inside two scopes)."""
    return getattr(_threadlocal_scope, "namescope", "")


def CurrentDeviceScope():
    """The current DeviceOption, or None outside any DeviceScope."""
    return getattr(_threadlocal_scope, "devicescope", None)


@contextlib.contextmanager
def NameScope(prefix, reset=False):
    """Prepend `prefix/` to string blob names given to op builders in this block."""
    assert isinstance(prefix, str) or prefix is None, \
        "NameScope takes in a string as its argument."
    old_scope = CurrentNameScope()
    prefix = prefix + _NAMESCOPE_SEPARATOR if prefix else ""
    _threadlocal_scope.namescope = prefix if reset else old_scope + prefix
    try:
        yield
    finally:
        assert _threadlocal_scope.namescope.endswith(prefix), \
            "The namescope variable is changed from outside NameScope() calls."
        _threadlocal_scope.namescope = old_scope


@contextlib.contextmanager
def DeviceScope(scope, node_name=None):
    """Stamp a copy of `scope` (a DeviceOption) on every op created in this block."""
    new_scope = caffe2_pb2.DeviceOption()
    if scope:
        assert isinstance(scope, caffe2_pb2.DeviceOption), \
            "DeviceScope takes in a caffe2_pb2.DeviceOption as its argument."
        new_scope.CopyFrom(scope)
    else:
        assert node_name, "At least one argument should be non-null in DeviceScope"
    if node_name:
        new_scope.node_name = node_name
    old_scope = CurrentDeviceScope()
    if old_scope and old_scope.HasField("node_name") and not new_scope.HasField("node_name"):
        new_scope.node_name = old_scope.node_name
    if old_scope:
        # Caffe2 merges and sorts whenever there is an enclosing scope.
        merged = sorted(list(new_scope.extra_info) + list(old_scope.extra_info))
        del new_scope.extra_info[:]
        new_scope.extra_info.extend(merged)
    _threadlocal_scope.devicescope = new_scope
    try:
        yield
    finally:
        assert _threadlocal_scope.devicescope == new_scope, \
            "The device scope is changed from outside DeviceScope() calls."
        _threadlocal_scope.devicescope = old_scope


@contextlib.contextmanager
def EmptyNameScope():
    """Run the block with no name scope."""
    old_scope = CurrentNameScope()
    _threadlocal_scope.namescope = ""
    try:
        yield
    finally:
        _threadlocal_scope.namescope = old_scope


@contextlib.contextmanager
def EmptyDeviceScope():
    """Run the block with no device scope."""
    old_scope = CurrentDeviceScope()
    _threadlocal_scope.devicescope = None
    try:
        yield
    finally:
        _threadlocal_scope.devicescope = old_scope
