"""Run facebookresearch/dlrm's dlrm_s_caffe2.py, unmodified, on real Caffe2 and on
graphnet for a table of argument sets, and compare what they print.

    python tests/dlrm/compare_dlrm.py --dlrm-src /tmp/dlrm \\
        --c2ref /tmp/c2ref/venv-torch1.10.2/bin/python [--graphnet-python PY] \\
        [--out /tmp/dlrm_compare] [--only NAME ...] [--list]

--dlrm-src    a checkout of facebookresearch/dlrm (nothing from it is copied here)
--c2ref       a Python with real Caffe2 (torch<=1.10 wheels), numpy, scikit-learn,
              tqdm and onnx; its outputs are cached under OUT/ref/<set>/ and
              reused while the command is unchanged (--fresh-ref reruns them)
--graphnet-python  a Python with graphnet, torch, scikit-learn, tqdm, onnx, pydot
              (default: the Python running this script)

Run this script with the graphnet Python: it parses the saved NetDefs with
graphnet's caffe2_pb2. Every run happens in its own empty working directory
(the script writes dlrm_s_caffe2.proto / dlrm_s_caffe2_graph.pdf there). stderr
is kept next to stdout but never compared (Caffe2's C++ log lines, numpy/torch
deprecation warnings differ between the environments).

Comparisons, per set:
  exact  stdout identical after masking the "X ms/it" field (timings), and the
         same exit status;
  proto  `exact`, plus the written dlrm_s_caffe2.proto parsed as NetDef messages
         and compared as messages (real Caffe2's protobuf 3.20 prints floats as
         0.009999999776482582 where graphnet's protobuf prints 0.01);
  plot   `exact`, plus the pydot graph source (to_string) of the PDF each run
         wrote, captured by a sitecustomize hook around pydot.Dot.write;
  gpu    graphnet run with --use-gpu on GRAPHNET_VIRTUAL_GPUS=N against the real
         Caffe2 CPU run of the same arguments without --use-gpu (real Caffe2 here
         has no GPU): same lines and words; every number equal within one unit of
         its last printed digit plus float32 noise (see _close).
  fixed  a documented divergence: real Caffe2 stops with an error graphnet does
         not raise (README "Differences": GlobalInit flags); real Caffe2 must exit
         non-zero, graphnet 0, and what Caffe2 printed must be a prefix of what
         graphnet printed;
Verdicts: PASS as above; NEAR when an exact/proto/plot set's stdout has the same
lines and words and every differing number is within one unit of its last
printed digit (a float32 rounding boundary: Caffe2's MKL GEMM and numpy sum in a
different order, so results can differ in the last bit); DIFF otherwise.
Exit status: 0 when no set is DIFF.
"""

import argparse
import difflib
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = "dlrm_s_caffe2.py"

BASE = ["--mini-batch-size", "4", "--data-size", "32", "--num-batches", "8",
        "--print-freq", "1", "--numpy-rand-seed", "123", "--debug-mode"]
BCE = ["--loss-function", "bce", "--round-targets", "True"]
FOUR_TABLES = ["--arch-embedding-size", "4-3-2-5", "--mini-batch-size", "8"]

# (name, extra arguments, kind, virtual GPUs for the graphnet run)
SETS = [
    ("default", [], "exact", 0),
    ("cat", ["--arch-interaction-op", "cat"], "exact", 0),
    ("itself", ["--arch-interaction-itself"], "exact", 0),
    ("bigger", ["--arch-sparse-feature-size", "4", "--arch-embedding-size", "10-20-30",
                "--arch-mlp-bot", "4-8-4", "--arch-mlp-top", "8-4-1",
                "--num-indices-per-lookup", "3"], "exact", 0),
    ("precision-8", ["--print-precision", "8"], "exact", 0),
    # test/dlrm_s_test.sh's 4th configuration (uneven last batch, 3 epochs)
    ("dlrm-test-4", ["--mini-batch-size=2", "--data-size=5", "--nepochs=3",
                     "--learning-rate=0.1"], "exact", 0),
    ("mini-batch-1", ["--mini-batch-size", "1", "--data-size", "6"], "exact", 0),
    ("synthetic", ["--data-generation", "synthetic"], "exact", 0),
    ("bce", BCE, "exact", 0),
    ("bce-threshold", BCE + ["--loss-threshold", "1e-7"], "exact", 0),
    ("adagrad", ["--optimizer", "adagrad"], "exact", 0),
    ("rwsadagrad", ["--optimizer", "rwsadagrad"], "exact", 0),
    ("wp-fixed", ["--weighted-pooling", "fixed"], "exact", 0),
    ("wp-learned", ["--weighted-pooling", "learned"], "exact", 0),
    ("wp-learned-adagrad", ["--weighted-pooling", "learned", "--optimizer", "adagrad"],
     "exact", 0),
    ("inference-only", ["--inference-only"], "exact", 0),
    ("test-freq", ["--test-freq", "3", "--nepochs", "2"], "exact", 0),
    ("mlperf-metrics", BCE + ["--test-freq", "4", "--mlperf-logging"], "exact", 0),
    ("net-type-dag", ["--caffe2-net-type", "dag"], "exact", 0),
    ("net-type-async", ["--caffe2-net-type", "async_scheduling"], "exact", 0),
    ("enable-profiling", ["--enable-profiling"], "fixed", 0),
    ("print-time", ["--print-time"], "exact", 0),
    ("save-onnx", ["--save-onnx"], "exact", 0),
    ("save-proto-types-shapes", ["--save-proto-types-shapes"], "proto", 0),
    ("plot-compute-graph", ["--plot-compute-graph"], "plot", 0),
    ("gpu1", ["--use-gpu"], "gpu", 1),
    ("gpu2", ["--use-gpu"], "gpu", 2),
    ("gpu2-bce", ["--use-gpu"] + BCE, "gpu", 2),
    ("gpu2-wp-learned", ["--use-gpu", "--weighted-pooling", "learned"], "gpu", 2),
    ("gpu2-test-freq", ["--use-gpu", "--test-freq", "3"], "gpu", 2),
    ("gpu2-inference-only", ["--use-gpu", "--inference-only"], "gpu", 2),
    ("gpu2-cat", ["--use-gpu", "--arch-interaction-op", "cat"], "gpu", 2),
    ("gpu2-wp-fixed", ["--use-gpu", "--weighted-pooling", "fixed"], "gpu", 2),
    ("gpu2-net-type-dag", ["--use-gpu", "--caffe2-net-type", "dag"], "gpu", 2),
    ("gpu2-uneven-last-batch", ["--use-gpu", "--data-size", "30"], "gpu", 2),
    ("gpu4", ["--use-gpu"] + FOUR_TABLES, "gpu", 4),
    ("gpu2-precision-8", ["--use-gpu", "--print-precision", "8"], "gpu", 2),
    ("gpu4-precision-8", ["--use-gpu", "--print-precision", "8"] + FOUR_TABLES, "gpu", 4),
]

_NCCL_IGNORED = "Ignoring //caffe2/caffe2/contrib/nccl:nccl_ops as it is not a valid file.\n"
_MS_PER_IT = re.compile(r"-?\d+\.\d+ ms/it")
_USING = re.compile(r"^Using (CPU|\d+ GPU\(s\))\.\.\.$", re.M)
_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def _mask(text):
    """Timings are not compared."""
    return _MS_PER_IT.sub("<ms> ms/it", text)


_EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit)): ?(.*)$", re.M)


def _exception(stderr_path):
    """(type, first 100 characters of the message) of the last Python exception."""
    found = _EXCEPTION.findall(_read(stderr_path))
    if not found:
        return ("<no exception>", "")
    kind, message = found[-1]
    return kind.rsplit(".", 1)[-1], message[:100]


def _reference_python(path):
    if os.path.isdir(path):
        for sub in ("bin/python", "venv-torch1.10.2/bin/python"):
            if os.path.exists(os.path.join(path, sub)):
                return os.path.join(path, sub)
    return path


def _run(python, args, workdir, env, dlrm_src, hooks=None):
    if os.path.isdir(workdir):
        shutil.rmtree(workdir)
    os.makedirs(workdir)
    # --data-generation synthetic reads ./input/dist_emb_<i>.log
    os.symlink(os.path.join(dlrm_src, "input"), os.path.join(workdir, "input"))
    env = dict(env)
    if hooks:
        env["PYTHONPATH"] = hooks + os.pathsep + env.get("PYTHONPATH", "")
    start = time.time()
    with open(os.path.join(workdir, "stdout.txt"), "w") as out, \
            open(os.path.join(workdir, "stderr.txt"), "w") as err:
        rc = subprocess.call(python + args, cwd=workdir, env=env, stdout=out,
                             stderr=err)
    with open(os.path.join(workdir, "rc"), "w") as f:
        f.write("%d\n" % rc)
    return rc, time.time() - start


def _read(path):
    with open(path) as f:
        return f.read()


def _text_diff(ref, got, label_ref, label_got, limit=20):
    lines = list(difflib.unified_diff(ref.splitlines(), got.splitlines(), label_ref,
                                      label_got, lineterm="", n=1))
    return lines[:limit] + (["... (%d more diff lines)" % (len(lines) - limit)]
                            if len(lines) > limit else [])


def _last_digit_unit(text):
    """10**(exponent - decimals): the value of one unit in the last printed digit."""
    mantissa, _, exponent = text.lower().partition("e")
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    return 10.0 ** ((int(exponent) if exponent else 0) - decimals)


def _close(a_text, b_text):
    """Printed numbers agree: |a-b| <= one unit of the last printed digit (rounding
    at print precision) + 1e-6 relative (float32 summation order)."""
    a, b = float(a_text), float(b_text)
    unit = max(_last_digit_unit(a_text), _last_digit_unit(b_text))
    return abs(a - b) <= unit * (1 + 1e-9) + 1e-6 * max(abs(a), abs(b)), abs(a - b)


def _numeric_compare(ref, got):
    """(ok, worst |diff|, first problem) for texts equal up to number tolerance."""
    ref_lines, got_lines = ref.splitlines(), got.splitlines()
    if len(ref_lines) != len(got_lines):
        return False, None, "line count %d vs %d" % (len(ref_lines), len(got_lines))
    worst = 0.0
    for k, (r, g) in enumerate(zip(ref_lines, got_lines)):
        if _NUMBER.sub("#", r).split() != _NUMBER.sub("#", g).split():
            return False, worst, "line %d words differ:\n  ref: %s\n  got: %s" % (k + 1, r, g)
        for x, y in zip(_NUMBER.findall(r), _NUMBER.findall(g)):
            ok, diff = _close(x, y)
            worst = max(worst, diff)
            if not ok:
                return False, worst, "line %d: %s vs %s\n  ref: %s\n  got: %s" % (
                    k + 1, x, y, r, g)
    return True, worst, None


def _compare_proto(ref_dir, gn_dir):
    sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
    from google.protobuf import text_format
    from graphnet.proto import caffe2_pb2

    nets = []
    for d in (ref_dir, gn_dir):
        path = os.path.join(d, "dlrm_s_caffe2.proto")
        if not os.path.exists(path):
            return False, "%s was not written" % path
        net = caffe2_pb2.NetDef()
        text_format.Parse(_read(path), net)
        nets.append(net)
    if nets[0] == nets[1]:
        return True, "dlrm_s_caffe2.proto: equal NetDef messages (%d ops, %d bytes " \
                     "serialized)" % (len(nets[0].op), nets[0].ByteSize())
    return False, "\n".join(_text_diff(str(nets[0]), str(nets[1]), "ref.proto",
                                       "graphnet.proto"))


def _compare_plot(ref_dir, gn_dir):
    texts = []
    for d in (ref_dir, gn_dir):
        pdf = os.path.join(d, "dlrm_s_caffe2_graph.pdf")
        dot = pdf + ".dot"
        if not (os.path.exists(pdf) and os.path.exists(dot)):
            return False, "%s: pdf or captured dot source missing" % d
        texts.append(_read(dot))
    if texts[0] == texts[1]:
        return True, "pydot graph source identical (%d bytes); both PDFs written" % len(
            texts[0])
    return False, "\n".join(_text_diff(texts[0], texts[1], "ref.dot", "graphnet.dot"))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dlrm-src", default=os.environ.get("DLRM_SRC"),
                   help="dlrm checkout (default: $DLRM_SRC)")
    p.add_argument("--c2ref", default=os.environ.get("C2REF"),
                   help="python with real Caffe2, or a directory holding bin/python or "
                        "venv-torch1.10.2/bin/python (default: $C2REF)")
    p.add_argument("--graphnet-python", default=sys.executable)
    p.add_argument("--out", default="/tmp/dlrm_compare")
    p.add_argument("--only", nargs="*", help="set names to run")
    p.add_argument("--fresh-ref", action="store_true",
                   help="rerun real Caffe2 even when its output is cached")
    p.add_argument("--list", action="store_true")
    opts = p.parse_args(argv)

    if opts.list:
        for name, extra, kind, ngpu in SETS:
            print("%-26s %-6s %s" % (name, kind, " ".join(extra)))
        return 0
    if not opts.dlrm_src or not opts.c2ref:
        p.error("give --dlrm-src and --c2ref (or set DLRM_SRC and C2REF)")
    opts.c2ref = _reference_python(opts.c2ref)
    dlrm_src = os.path.abspath(opts.dlrm_src)
    script = os.path.join(dlrm_src, SCRIPT)
    if not os.path.exists(script):
        p.error("no %s under %s" % (SCRIPT, opts.dlrm_src))
    base_env = {k: v for k, v in os.environ.items()
                if k not in ("GRAPHNET_VIRTUAL_GPUS", "GRAPHNET_STRICT_DEVICES",
                             "PYTHONPATH")}
    base_env["PYTHONPATH"] = dlrm_src
    hooks = os.path.join(HERE, "hooks")
    out = os.path.abspath(opts.out)

    rows = []
    for name, extra, kind, ngpu in SETS:
        if opts.only and name not in opts.only:
            continue
        args = BASE + extra
        ref_args = [a for a in args if a != "--use-gpu"]
        # later flags win in argparse, so FOUR_TABLES' batch size overrides BASE's
        ref_dir = os.path.join(out, "ref", name)
        gn_dir = os.path.join(out, "graphnet", name)
        use_hooks = hooks if kind == "plot" else None
        ref_cmd = [opts.c2ref, script] + ref_args
        cached = os.path.join(ref_dir, "cmd")
        if (opts.fresh_ref or not os.path.exists(os.path.join(ref_dir, "rc"))
                or not os.path.exists(cached) or _read(cached) != " ".join(ref_cmd) + "\n"):
            _run([opts.c2ref, script], ref_args, ref_dir, base_env, dlrm_src, use_hooks)
        env = dict(base_env)
        if ngpu:
            env["GRAPHNET_VIRTUAL_GPUS"] = str(ngpu)
        gn_cmd = [opts.graphnet_python, "-m", "graphnet", "run", script] + args
        _, seconds = _run([opts.graphnet_python, "-m", "graphnet", "run", script], args,
                          gn_dir, env, dlrm_src, use_hooks)
        with open(os.path.join(gn_dir, "cmd"), "w") as f:
            f.write(("GRAPHNET_VIRTUAL_GPUS=%d " % ngpu if ngpu else "")
                    + " ".join(gn_cmd) + "\n")
        with open(os.path.join(ref_dir, "cmd"), "w") as f:
            f.write(" ".join(ref_cmd) + "\n")

        rc_ref = int(_read(os.path.join(ref_dir, "rc")))
        rc_gn = int(_read(os.path.join(gn_dir, "rc")))
        ref_out = _mask(_read(os.path.join(ref_dir, "stdout.txt")))
        gn_out = _mask(_read(os.path.join(gn_dir, "stdout.txt")))
        notes = []
        near = False
        if kind == "gpu":
            ref_out = _USING.sub("Using <devices>...", ref_out)
            gn_out = _USING.sub("Using <devices>...", gn_out)
            if ngpu > 1 and _NCCL_IGNORED in gn_out:
                # Caffe2's dyndep prints this too; the CPU reference never loads NCCL
                gn_out = gn_out.replace(_NCCL_IGNORED, "", 1)
                notes.append("dropped graphnet's expected line %r (dyndep.InitOpsLibrary "
                             "of the NCCL ops, multi-device runs only)"
                             % _NCCL_IGNORED.strip())
            ok, worst, problem = _numeric_compare(ref_out, gn_out)
            if ok:
                notes.insert(0, "same lines; every number within print precision; max "
                                "|diff| %.3g" % worst)
            else:
                notes.insert(0, problem)
        elif kind == "fixed":
            ok = rc_ref != 0 and rc_gn == 0 and gn_out.startswith(ref_out)
            notes.append("real Caffe2 exits %d after %d lines; graphnet runs on (exit %d, "
                         "%d lines) and repeats them first: %s" % (
                             rc_ref, len(ref_out.splitlines()), rc_gn,
                             len(gn_out.splitlines()), "yes" if ok else "NO"))
        else:
            ok = ref_out == gn_out
            if ok:
                notes.append("stdout identical (%d lines)" % len(ref_out.splitlines()))
            else:
                near_ok, worst, _ = _numeric_compare(ref_out, gn_out)
                if near_ok:
                    near = True
                    notes.append("stdout differs only in the last printed digit of some "
                                 "numbers (max |diff| %.3g), as float32 rounding at a "
                                 "print boundary does" % worst)
                notes.extend(_text_diff(ref_out, gn_out, "real-caffe2", "graphnet"))
        if kind == "fixed":
            pass  # the exit status differs by design (checked above)
        elif rc_ref != rc_gn:
            ok = False
            notes.append("exit status %d (real Caffe2) vs %d (graphnet); see %s/stderr.txt"
                         % (rc_ref, rc_gn, gn_dir))
        elif rc_ref:
            errors = [_exception(os.path.join(d, "stderr.txt")) for d in (ref_dir, gn_dir)]
            if errors[0][0] != errors[1][0]:
                ok = False
            notes.append("both exit with status %d: %s (real Caffe2) / %s (graphnet)"
                         % (rc_ref, ": ".join(errors[0]), ": ".join(errors[1])))
        if kind == "proto":
            same, why = _compare_proto(ref_dir, gn_dir)
            ok, notes = ok and same, notes + [why]
        if kind == "plot":
            same, why = _compare_plot(ref_dir, gn_dir)
            ok, notes = ok and same, notes + [why]
        if not ok and near and rc_ref == rc_gn:
            verdict = "NEAR"
        else:
            verdict = "PASS" if ok else "DIFF"
        rows.append((name, verdict, kind, seconds, notes))
        print("%-26s %s" % (name, rows[-1][1]), file=sys.stderr)

    print("%-26s %-5s %-6s %7s  %s" % ("set", "", "kind", "gn s", "notes"))
    for name, verdict, kind, seconds, notes in rows:
        print("%-26s %-5s %-6s %7.1f  %s" % (name, verdict, kind, seconds, notes[0]))
        for line in notes[1:]:
            print(" " * 50 + line)
    counts = {v: sum(1 for r in rows if r[1] == v) for v in ("PASS", "NEAR", "DIFF")}
    print("%d sets, %d PASS, %d NEAR, %d DIFF (outputs under %s)" % (
        len(rows), counts["PASS"], counts["NEAR"], counts["DIFF"], out))
    return 1 if counts["DIFF"] else 0


if __name__ == "__main__":
    sys.exit(main())
