"""NameScope and DeviceScope: the only ambient state, read when an op is built.

Thread-local, as in caffe2.python.scope. Imports the proto module only.
"""

import contextlib
import threading

from graphnet.proto import caffe2_pb2

__all__ = ["CurrentNameScope", "CurrentDeviceScope", "NameScope", "DeviceScope",
           "EmptyNameScope", "EmptyDeviceScope", "_NAMESCOPE_SEPARATOR"]

_NAMESCOPE_SEPARATOR = "/"


class _ScopeState(threading.local):
    """Per-thread scopes. The class attributes are every thread's starting values:
    reading them costs an attribute lookup, where getattr(local, name, default)
    raised and caught an AttributeError per op built outside any scope."""

    namescope = ""
    devicescope = None


_threadlocal_scope = _ScopeState()


def CurrentNameScope():
    """The current name-scope prefix ('' at first; 'a/b/' inside two scopes)."""
    return _threadlocal_scope.namescope


def CurrentDeviceScope():
    """The current DeviceOption, or None outside any DeviceScope."""
    return _threadlocal_scope.devicescope


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


class DeviceScope(contextlib.ContextDecorator):
    """Stamp a copy of `scope` (a DeviceOption) on every op created in this block.

    What Caffe2's @contextmanager function did, as a class: scripts open one per op
    they build (DLRM: per table and device), and a generator-based context manager
    costs twice as much. Like that one, each object serves one `with` block (as a
    decorator it makes a fresh one per call)."""

    def __init__(self, scope, node_name=None):
        self._scope, self._node_name = scope, node_name
        self._new = self._old = None  # this block's scope and the one it replaced

    def _recreate_cm(self):
        return DeviceScope(self._scope, self._node_name)

    def __enter__(self):
        if self._new is not None:
            raise RuntimeError("this DeviceScope was entered already; make a new "
                               "DeviceScope(...) for each with block")
        scope, node_name = self._scope, self._node_name
        new_scope = caffe2_pb2.DeviceOption()
        if scope:
            assert isinstance(scope, caffe2_pb2.DeviceOption), \
                "DeviceScope takes in a caffe2_pb2.DeviceOption as its argument."
            new_scope.CopyFrom(scope)
        else:
            assert node_name, "At least one argument should be non-null in DeviceScope"
        if node_name:
            new_scope.node_name = node_name
        old_scope = _threadlocal_scope.devicescope
        if old_scope is not None:
            if old_scope.HasField("node_name") and not new_scope.HasField("node_name"):
                new_scope.node_name = old_scope.node_name
            # Caffe2 merges and sorts whenever there is an enclosing scope.
            merged = sorted(list(new_scope.extra_info) + list(old_scope.extra_info))
            del new_scope.extra_info[:]
            new_scope.extra_info.extend(merged)
        self._new, self._old = new_scope, old_scope
        _threadlocal_scope.devicescope = new_scope

    def __exit__(self, *exc_info):
        current = _threadlocal_scope.devicescope
        assert current is self._new or current == self._new, \
            "The device scope is changed from outside DeviceScope() calls."
        _threadlocal_scope.devicescope = self._old
        return False


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
