"""Free: release the contents of blobs (what memonger.release_blobs_when_used
inserts after a blob's last use). Imports the registry only.

Each output must be its input (one-to-one in-place); afterwards the blob still
exists in the workspace but holds nothing, as after Caffe2's Blob::Reset().
"""

from graphnet.registry import INF, OpSchema


FREE = OpSchema(
    "Free", inputs=(1, INF), outputs=(1, INF), enforce_inplace=lambda i, o: i == o,
    same_number_of_outputs=True, empty_inputs_ok=True, should_not_do_gradient=True,
    doc="Frees the content of the blobs. The input and output blobs should be "
        "one-to-one inplace.")


@FREE.shape
def _free_shape(args, *inputs):
    # A freed blob has no shape or type any more.
    return [None] * len(inputs)


@FREE.kernel
def free(ctx, args, *inputs):
    return tuple(None for _ in inputs)
