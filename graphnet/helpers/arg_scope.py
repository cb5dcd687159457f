"""brew.arg_scope: default keyword arguments per helper, thread-local."""

import contextlib
import copy
import threading

__all__ = ["arg_scope", "get_current_scope"]

_threadlocal_scope = threading.local()


def get_current_scope():
    if not hasattr(_threadlocal_scope, "current_scope"):
        _threadlocal_scope.current_scope = {}
    return _threadlocal_scope.current_scope


@contextlib.contextmanager
def arg_scope(single_helper_or_list, **kwargs):
    """Within the block, calls of the given helpers get `kwargs` as defaults."""
    if not isinstance(single_helper_or_list, list):
        assert callable(single_helper_or_list), \
            "arg_scope is only supporting single or a list of helper functions."
        single_helper_or_list = [single_helper_or_list]
    old_scope = copy.deepcopy(get_current_scope())
    for helper in single_helper_or_list:
        assert callable(helper), \
            "arg_scope is only supporting a list of callable helper functions."
        key = helper.__name__
        if key not in old_scope:
            _threadlocal_scope.current_scope[key] = {}
        _threadlocal_scope.current_scope[key].update(kwargs)
    try:
        yield
    finally:
        _threadlocal_scope.current_scope = old_scope
