"""Copy family: moving blobs between devices (Copy, CopyCPUToGPU, CopyGPUToCPU,
CopyFromCPUInput, EnsureCPUOutput, CopyOnDeviceLike).

Data movement goes through the backend (`ctx.backend.copy_to`), so the same
kernels move numpy arrays between emulated devices and CuPy arrays between
real ones. Gradients come with the training issue.
"""

from graphnet.devices import CPU
from graphnet.registry import OpSchema


def _any_input(schema, op_device, n_in, n_out, input_devices):
    """Inputs may live anywhere; the output lands on the op's device."""
    return [None] * n_in, [op_device] * n_out


def _cpu_output(schema, op_device, n_in, n_out, input_devices):
    return [None] * n_in, [CPU] * n_out


def _like_second_input(schema, op_device, n_in, n_out, input_devices):
    """CopyOnDeviceLike: the copy lives where input 1 ('like') lives."""
    like = input_devices[1] if len(input_devices) > 1 else None
    return [None] * n_in, [like if like is not None else op_device] * n_out


def _identical(args, x, *rest):
    return [x]


def _copy(ctx, args, x, *rest):
    return ctx.backend.copy_to(x, ctx.device)


COPY = OpSchema("Copy", inputs=1, outputs=1, devices=_any_input,
                doc="Copy input 0 into a new tensor on the op's device; the input may "
                    "live on any device.")
COPY.shape(_identical)
COPY.kernel(_copy)

COPY_CPU_TO_GPU = OpSchema(
    "CopyCPUToGPU", inputs=1, outputs=1, cpu_inputs={0}, device_kinds=("gpu",),
    declared_devices="requires_device_option",
    doc="Copy a CPU tensor to the op's GPU (GPU-only op).")
COPY_CPU_TO_GPU.shape(_identical)
COPY_CPU_TO_GPU.kernel(_copy)

COPY_GPU_TO_CPU = OpSchema(
    "CopyGPUToCPU", inputs=1, outputs=1, cpu_outputs={0}, device_kinds=("gpu",),
    declared_devices="requires_device_option",
    doc="Copy a tensor on the op's GPU to the CPU (GPU-only op).")
COPY_GPU_TO_CPU.shape(_identical)


@COPY_GPU_TO_CPU.kernel
def copy_gpu_to_cpu(ctx, args, x):
    return ctx.backend.copy_to(x, CPU)


COPY_FROM_CPU_INPUT = OpSchema(
    "CopyFromCPUInput", inputs=1, outputs=1, cpu_inputs={0},
    doc="Copy a CPU input to the op's device.")
COPY_FROM_CPU_INPUT.shape(_identical)
COPY_FROM_CPU_INPUT.kernel(_copy)

ENSURE_CPU_OUTPUT = OpSchema(
    "EnsureCPUOutput", inputs=1, outputs=1, devices=_cpu_output,
    doc="Copy the input, wherever it lives, to the CPU.")
ENSURE_CPU_OUTPUT.shape(_identical)
ENSURE_CPU_OUTPUT.kernel(copy_gpu_to_cpu)

COPY_ON_DEVICE_LIKE = OpSchema(
    "CopyOnDeviceLike", inputs=2, outputs=1, devices=_like_second_input,
    doc="Copy input 0 to the device where input 1 lives (Copy's gradient).")
COPY_ON_DEVICE_LIKE.shape(_identical)


@COPY_ON_DEVICE_LIKE.kernel
def copy_on_device_like(ctx, args, x, like):
    return ctx.backend.copy_like(x, like)



# --- gradients -----------------------------------------------------------------

@COPY.gradient
def _copy_gradient(g):
    """The gradient goes back to the device the forward source lives on."""
    return [g.op("CopyOnDeviceLike", [g.GO(0), g.I(0)], [g.GI(0)])]


def _mirror_copy_gradient(grad_type):
    def maker(g):
        if g.has_GO(0) and not isinstance(g.g_output[0], str):
            indices, values = g.GO_I(0), g.GO_V(0)
            g.SetSparse(0, g.I(0) + "_grad_indices", g.I(0) + "_grad_values")
            return [g.op(grad_type, [indices], [g.I(0) + "_grad_indices"]),
                    g.op(grad_type, [values], [g.I(0) + "_grad_values"])]
        return [g.op(grad_type, [g.GO(0)], [g.GI(0)])]
    return maker


COPY_GPU_TO_CPU.gradient(_mirror_copy_gradient("CopyCPUToGPU"))
COPY_CPU_TO_GPU.gradient(_mirror_copy_gradient("CopyGPUToCPU"))
COPY_ON_DEVICE_LIKE.should_not_do_gradient = True
