"""caffe2.python.helpers: the functions brew exposes (fc, relu, iter, ...).

One module per group, as in Caffe2; brew registers them by name.
"""
