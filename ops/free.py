"""Free: release the contents of blobs (what memonger.release_blobs_when_used
inserts after a blob's last use). Imports the registry only.

Each output must be its input (one-to-one in-place); afterwards the blob still
exists in the workspace but holds nothing, as after Caffe2's Blob::Reset().
"""

from graphnet.registry import INF, OpSchema


class _FreeSchema(OpSchema):
    """Caffe2's SameNumberOfOutput: as many outputs as inputs, checked before the
    in-place rule (with Caffe2's wording)."""

    def _check_reason(self, op):
        n_in, n_out = len(op.input), len(op.output)
        if n_in >= self.min_inputs and n_out >= self.min_outputs and n_in != n_out:
            return ("Output size %d not matching expected output size, which is %d. "
                    "Fix: list every freed blob as both input and output (Free([b], [b]))."
                    % (n_out, n_in))
        return super()._check_reason(op)


FREE = _FreeSchema(
    "Free", inputs=(1, INF), outputs=(1, INF), enforce_inplace=lambda i, o: i == o,
    should_not_do_gradient=True,
    doc="Frees the content of the blobs. The input and output blobs should be "
        "one-to-one inplace.")


@FREE.shape
def _free_shape(args, *inputs):
    # A freed blob has no shape or type any more.
    return [None] * len(inputs)


@FREE.kernel
def free(ctx, args, *inputs):
    return tuple(None for _ in inputs)
