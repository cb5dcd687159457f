"""Iter (the int64 iteration counter, on the CPU) and LearningRate with all of Caffe2's
policies; no gradient. Imports numpy, the registry, graphnet.errors, ops._common.
"""

import logging

import numpy as np

from graphnet.errors import ArgumentError, enforce
from graphnet.registry import Arg, OpSchema, TensorInfo

from ._fused import vm_kernel
from ._common import I64, TypedArgs, check_type

log = logging.getLogger("graphnet")

# --- Iter ---------------------------------------------------------------------------

ITER = OpSchema("Iter", inputs=(0, 1), outputs=1, enforce_inplace={(0, 0)},
                declared_devices="op_device",
                cpu_inputs={0}, cpu_outputs={0}, no_gradient=True,
                doc="Increment the int64 iteration counter (always on the CPU) by one.")


@ITER.shape
def _iter_shape(args, *inputs):
    return [TensorInfo(inputs[0].shape if inputs else (1,), np.int64)]


@ITER.kernel
def iter_op(ctx, args, *inputs):
    if inputs:
        counter = inputs[0]
    else:
        # Legacy form without the in-place input: Caffe2 incremented the output blob,
        # creating a zero counter on the first run.
        counter = ctx.output_value(0)
        if counter is None:
            log.error("You are using an old definition of IterOp that will be deprecated "
                      "soon. More specifically, IterOp now requires an explicit in-place "
                      "input and output.")
            counter = np.zeros(1, dtype=np.int64)
    if counter.size != 1:
        enforce(False, "The output of IterOp exists, but not of the right size "
                "(expected 1 element, found %d). Fix: initialize it with shape=[1]."
                % counter.size, input_index=0)
    if counter.dtype != np.int64:
        enforce(False, "Iter: the counter must be int64, found %s (Caffe2 "
                "reinterprets it as garbage). Fix: initialize it with ConstantFill(..., "
                "dtype=core.DataType.INT64) or np.int64." % counter.dtype, input_index=0)
    value = int(np.asarray(counter).reshape(-1)[0])
    if not (value >= 0):
        enforce(False, "Previous iteration number is negative (found %d). Fix: start "
                "the counter at 0." % value, input_index=0)
    if not (value < np.iinfo(np.int64).max):
        enforce(False, "Overflow will happen! (the counter is at "
                "the int64 maximum %d). Fix: reset it." % value, input_index=0)
    return np.full(counter.shape, value + 1, dtype=np.int64)


# --- LearningRate ---------------------------------------------------------------------

def _cdiv(a, b, what):
    """C++ integer division (truncates toward zero); Caffe2 crashed on b == 0."""
    if b == 0:
        enforce(False, "LearningRate: %s is 0 and the policy divides by it (Caffe2 crashes "
                "with SIGFPE). Fix: pass a positive %s." % (what, what))
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _fdiv(a, b):
    """IEEE float division (x/0 gives inf or nan, as in C++)."""
    with np.errstate(all="ignore"):
        return float(np.float64(a) / np.float64(b))


def _pow(a, b):
    with np.errstate(all="ignore"):
        return float(np.power(np.float64(a), np.float64(b)))


def _cmax(a, b):
    """std::max: the first argument unless the second is larger (nan keeps `a`)."""
    return b if a < b else a


def _u64(n):
    """uint64_t(n): some functors store counts unsigned, so -1 means 2**64 - 1."""
    return n % 2 ** 64


def _linear_warmup(start, n):
    return lambda it: 1.0 if it >= n else start + _fdiv((1.0 - start) * it, _u64(n))


def _constant_warmup(multiplier, n):
    return lambda it: 1.0 if it >= n else multiplier


def _inv(gamma, power):
    return lambda it: _pow(1.0 + gamma * it, -power)


def _cyclical(base_lr, max_lr, stepsize, decay):
    def cyclical(it):
        k = _cdiv(it, 2 * stepsize, "stepsize")
        x = abs(_fdiv(it, stepsize) - 2 * (k + 1) + 1)
        return 1 + (_fdiv(abs(max_lr), abs(base_lr)) - 1) * _cmax(0.0, 1 - x) * \
            _pow(decay, k)
    return cyclical


def _cosine(min_lr, max_lr, period, t_mult, shrink):
    def cosine(it):
        with np.errstate(all="ignore"):
            it, period_ = np.float64(it), np.float64(period)
            if t_mult != 1.0:
                i = np.floor(np.log(1 - it / period_ * (1.0 - t_mult)) / np.log(t_mult))
                t_i = t_mult ** i * period_
                t_curr = it - (1.0 - t_mult ** i) / (1.0 - t_mult) * period_
            else:
                i = np.floor(it / period_)
                t_i, t_curr = period_, it - period_ * i
            scale = shrink ** i
            low, high = min_lr * scale, max_lr * scale
            return float(low + 0.5 * (high - low) * (1 + np.cos(np.pi * t_curr / t_i)))
    return cosine


def _constant_then_linear(start, n_const, n_linear):
    const, linear = _constant_warmup(start, n_const), _linear_warmup(start, n_linear)
    return lambda it: (const(it) if it < n_const else linear(it - n_const)
                       if it < n_const + n_linear else 1.0)


def _warmup_args(p):
    return (p.float("start_warmup_multiplier", 0.1),
            p.int("constant_warmup_num_iter", 10000000),
            p.int("linear_warmup_num_iter", 10000000))


def _composite(p, base_lr):
    """Sub-policies take turns: the i-th runs for sub_policy_num_iters[i] iterations
    from iteration 1, reading the absolute iteration, scaled by its lr_scale."""
    counts = p.ints("sub_policy_num_iters")
    if not counts:
        raise ArgumentError("Must specify at least one sub learning rate policy (found "
                            "no sub_policy_num_iters). Fix: pass sub_policy_num_iters=[n0, "
                            "...] and sub_policy_<i>_policy for each.")
    items, start = [], 1
    for i, count in enumerate(counts):
        if count <= 0:
            raise ArgumentError("The number of iterations for sub learning rate policy "
                                "should be positive (sub_policy_num_iters[%d] = %d). Fix: "
                                "pass a positive count." % (i, count))
        sub = p.prefixed("sub_policy_%d_" % i)
        name = sub.string("policy", "")
        if name == "composite":
            raise ArgumentError("Defining composite LR policy as a subpolicy of composite "
                                "LR policy is not allowed (sub_policy_%d_policy). Fix: "
                                "list its sub-policies at the top level." % i)
        scale = sub.float("lr_scale", 1.0)
        items.append((start, scale, _lr_policy(name, sub, base_lr)))
        start += count

    def composite(it):
        # Caffe2 looked the iteration up in a map from start iterations; below the
        # first start (iteration 0) its lookup fell on the first sub-policy.
        chosen = items[0]
        for item in items:
            if item[0] <= it:
                chosen = item
        return chosen[2](it) * chosen[1]
    return composite


def _lr_policy(name, p, base_lr):
    """The multiplier function iter -> float of LR policy `name`, reading its
    arguments through `p` with Caffe2's types and defaults."""
    if name == "fixed":
        return lambda it: 1.0
    if name == "step":
        stepsize, gamma = p.int("stepsize", 0, np.int32), p.float("gamma", 0.0)
        return lambda it: _pow(gamma, _cdiv(it, stepsize, "stepsize"))
    if name == "exp":
        gamma = p.float("gamma", 0.0)
        return lambda it: _pow(gamma, it)
    if name == "inv":
        return _inv(p.float("gamma", 0.0), p.float("power", 0.0))
    if name == "poly":
        max_iter, power = p.int("max_iter", -1, np.int32), p.float("power", 0.0)
        return lambda it: _pow(1.0 - _fdiv(it, _u64(max_iter)), power)
    if name == "gate":
        m1, m2 = p.float("multiplier_1", 1.0), p.float("multiplier_2", 1.0)
        n = p.int("num_iter", 0, np.int32)
        return lambda it: m2 if it >= n else m1
    if name == "linearWarmup":
        return _linear_warmup(p.float("start_multiplier", 0.0),
                              p.int("num_iter", 0, np.int32))
    if name == "constantWarmup":
        return _constant_warmup(p.float("multiplier", 0.5), p.int("num_iter", 0, np.int32))
    if name == "pieceWarmup":
        m1, n1 = p.float("m1", 0.5), p.int("n1", 0)
        m2, n2, m3 = p.float("m2", 0.5), p.int("n2", 0), p.float("m3", 0.5)
        return lambda it: m1 if it < n1 else m2 if it < n2 else m3
    if name == "alter":
        first = p.bool("active_first", True)
        active, inactive = p.int("active_period", -1), p.int("inactive_period", -1)

        def alter(it):
            phase = it - (active + inactive) * _cdiv(it, active + inactive,
                                                     "active_period + inactive_period")
            return float((phase < (active if first else inactive)) == first)
        return alter
    if name == "hill":
        n, start = p.int("num_iter", 0), p.float("start_multiplier", 0.0)
        gamma, power = p.float("gamma", 0.0), p.float("power", 0.0)
        end = p.float("end_multiplier", 0.0)
        warm, inv = _linear_warmup(start, n), _inv(gamma, power)
        return lambda it: warm(it) if it < n else _cmax(end, inv(it - n))
    if name == "slope":
        n1, m1 = p.int("num_iter_1", 0), p.float("multiplier_1", 0.0)
        n2, m2 = p.int("num_iter_2", 0), p.float("multiplier_2", 0.0)
        return lambda it: m1 if it < n1 else _cmax(m2, m1 + _fdiv((it - n1) * (m2 - m1),
                                                                  n2 - n1))
    if name == "composite" and not p.prefix:
        return _composite(p, base_lr)
    if name == "cyclical":
        return _cyclical(base_lr, p.float("max_lr", 0.005), p.int("stepsize", 0, np.int32),
                         p.float("decay", 1.0))
    if name == "cosine":
        return _cosine(p.float("min_lr", 0.1), p.float("max_lr", 0.5),
                       p.int("period", 50, np.int32), p.float("t_mult", 1.0),
                       p.float("lr_shrink", 0.99))
    if name == "constantThenLinearWarmup":
        return _constant_then_linear(*_warmup_args(p))
    if name == "compositeCyclical":
        start, n_const, n_linear = _warmup_args(p)
        warm = _constant_then_linear(start, n_const, n_linear)
        cyc = _cyclical(base_lr, p.float("cyclical_max_lr", 0.05),
                        p.int("cyclical_step_size", 1000000, np.int32),
                        p.float("cyclical_decay", 1.0))
        return lambda it: warm(it) if it < n_const + n_linear else \
            cyc(it - n_const - n_linear)
    if name == "compositeCosine":
        start, n_const, n_linear = _warmup_args(p)
        warm = _constant_then_linear(start, n_const, n_linear)
        cos = _cosine(p.float("cosine_min_lr", 0.1), p.float("cosine_max_lr", 0.5),
                      p.int("cosine_period", 50, np.int32), p.float("cosine_t_mult", 1.0),
                      p.float("cosine_lr_shrink", 0.99))
        return lambda it: warm(it) if it < n_const + n_linear else \
            cos(it - n_const - n_linear)
    raise ArgumentError("Unknown learning rate policy: %s. Fix: use one of %s."
                        % (name, ", ".join(LR_POLICIES)))


LR_POLICIES = ("fixed", "step", "exp", "inv", "poly", "gate", "linearWarmup",
               "constantWarmup", "pieceWarmup", "alter", "hill", "slope", "composite",
               "cyclical", "cosine", "constantThenLinearWarmup", "compositeCyclical",
               "compositeCosine")
_FLT_MAX = float(np.finfo(np.float32).max)


def _learning_rate_setup(args, op):
    """LearningRateOp's constructor: base_lr and policy, then the policy's own args
    (only those it reads, with Caffe2's types: an unused mistyped arg is harmless)."""
    if args.base_lr is None or args.base_lr == _FLT_MAX:
        raise ArgumentError("Base learning rate must be set. (LearningRate found no "
                            "base_lr.) Fix: pass base_lr=<float>, e.g. base_lr=-0.01.")
    if not args.policy:
        raise ArgumentError("Must specify a learning rate policy. (LearningRate found "
                            "no policy.) Fix: pass policy='fixed' (or step, exp, ...).")
    args.multiplier = _lr_policy(args.policy, TypedArgs(op), args.base_lr)


LEARNING_RATE = OpSchema(
    "LearningRate", arg_check=lambda args: _learning_rate_setup(args, args._def),
    inputs=1, outputs=1, cpu_inputs={0},
    no_gradient=True, args=[Arg("base_lr", "float"), Arg("policy", "string")],
    doc="lr = base_lr * multiplier(iter) as a 0-d float32 on the op's device; the "
        "int64 iteration input lives on the CPU.")


@LEARNING_RATE.shape
def _learning_rate_shape(args, it):
    return [TensorInfo((), np.float32)]


@LEARNING_RATE.kernel
def learning_rate(ctx, args, it):
    if it.dtype != I64:
        check_type(it, I64, 0, "(LearningRate iteration input: expected int64, found %s.) "
                   "Fix: feed it as int64." % it.dtype.name)
    enforce(it.size >= 1, "LearningRate: the iteration input is empty, expected one "
            "int64 element. Fix: feed the Iter counter (shape [1]).", input_index=0)
    step = int(np.asarray(ctx.backend.to_host(it)).reshape(-1)[0])
    with np.errstate(all="ignore"):  # C++ float arithmetic: overflow gives inf
        lr = np.float32(args.base_lr) * np.float32(args.multiplier(step))
    return ctx.backend.from_host(np.array(lr, dtype=np.float32), ctx.device)


# --- fused lowering (graphnet.executors.fused) -----------------------------------------

@vm_kernel
def iter_vm(c, p, f4, i4, i8):
    """out = counter + 1 for a counter in [0, int64 max) (counter, out: int64)."""
    value = i8[c[p]]
    if value < 0 or value == np.iinfo(np.int64).max:
        return False
    i8[c[p + 1]] = value + 1
    return True


@ITER.lowering
def _lower_iter(f):
    if len(f.in_info) != 1 or not f.all_dtypes(np.int64) or f.size() != 1 \
            or f.in_info[0].shape != f.out_info[0].shape:
        return False
    f.emit(iter_vm, f.off(0), f.out(0))
    return True


@LEARNING_RATE.lowering
def _lower_learning_rate(f):
    """The fixed policy's rate does not depend on the iteration: its recorded value."""
    return f.args.policy == "fixed" and f.write_recorded(0)
