"""brew.concat / depth_concat."""

__all__ = ["concat", "depth_concat"]


def concat(model, blobs_in, blob_out, **kwargs):
    """Concat whose split-info output is named `_<out>_concat_dims`."""
    if kwargs.get("order") and kwargs.get("axis"):
        kwargs.pop("order")  # the op refuses both
    return model.net.Concat(blobs_in, [blob_out, "_" + blob_out + "_concat_dims"],
                            **kwargs)[0]


def depth_concat(model, blobs_in, blob_out, **kwargs):
    """The old name of concat."""
    print("DepthConcat is deprecated. use Concat instead.")
    return concat(model, blobs_in, blob_out, **kwargs)
