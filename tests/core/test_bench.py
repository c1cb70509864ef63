"""jaxlab.core.bench: the child-process runner the benchmarks use for rows under other XLA flags."""
import pytest

from jaxlab.core.bench import SINGLE_THREAD_EIGEN, child_json, median_time


def test_child_json_sets_the_device_count_and_flags_and_reads_the_last_line(tmp_path):
    script = tmp_path / "child.py"
    script.write_text("import json, os, sys\nprint('progress')\n"
                      "print(json.dumps({'argv': sys.argv[1:], 'xla': os.environ['XLA_FLAGS']}))\n")
    out = child_json(str(script), ["--a=1"], 2, SINGLE_THREAD_EIGEN)
    assert out["argv"] == ["--a=1"]
    assert out["xla"] == "--xla_force_host_platform_device_count=2 " + SINGLE_THREAD_EIGEN


def test_child_json_failure_names_the_script_and_shows_stderr(tmp_path):
    script = tmp_path / "bad.py"
    script.write_text("import sys\nsys.stderr.write('boom: no such model')\nsys.exit(3)\n")
    with pytest.raises(RuntimeError, match=r"bad\.py.*exit code 3(.|\n)*boom: no such model"):
        child_json(str(script), [], 1)


def test_median_time_rejects_zero_repeats():
    with pytest.raises(ValueError, match="repeats"):
        median_time(lambda: 0, 0)
