"""The DLRM comparison harness's own rules (no dlrm, no real Caffe2 needed)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare_dlrm as cd  # noqa: E402


def test_timings_are_masked():
    line = "Finished training it 1/8 of epoch 0, 12.34 ms/it, loss 0.094020"
    assert cd._mask(line) == "Finished training it 1/8 of epoch 0, <ms> ms/it, loss 0.094020"
    assert cd._mask(line.replace("12.34", "-1.00")) == cd._mask(line)


def test_numbers_agree_within_one_unit_of_the_last_printed_digit():
    assert cd._close("0.125176", "0.125177")[0]
    assert not cd._close("0.125176", "0.125178")[0]
    assert cd._close("1.5e-07", "1.6e-07")[0] and not cd._close("1.5e-07", "1.8e-07")[0]
    assert cd._close("3", "3")[0] and not cd._close("3", "5")[0]


def test_texts_must_have_the_same_lines_and_words():
    ok, worst, _ = cd._numeric_compare("loss 0.125176\n[ 0.1 -0.2]\n",
                                       "loss 0.125177\n[ 0.1 -0.2]\n")
    assert ok and abs(worst - 1e-6) < 1e-12
    assert not cd._numeric_compare("loss 0.1\n", "accuracy 0.1\n")[0]
    assert not cd._numeric_compare("a 1\n", "a 1\nb 2\n")[0]


def test_exception_of_a_run(tmp_path):
    err = tmp_path / "stderr.txt"
    err.write_text("Traceback (most recent call last):\n  File \"x\", line 1\n"
                   "RuntimeError: [enforce fail at init.cc:90] success. Failed\n"
                   "frame #0: c10::ThrowEnforceNotMet\n")
    assert cd._exception(str(err)) == ("RuntimeError",
                                       "[enforce fail at init.cc:90] success. Failed")
    err.write_text("nothing\n")
    assert cd._exception(str(err))[0] == "<no exception>"


def test_every_set_is_named_once_and_gpu_sets_name_a_device_count():
    names = [name for name, _, _, _ in cd.SETS]
    assert len(names) == len(set(names))
    for name, extra, kind, ngpu in cd.SETS:
        assert kind in ("exact", "proto", "plot", "gpu", "fixed")
        assert (kind == "gpu") == ("--use-gpu" in extra) == (ngpu > 0)
