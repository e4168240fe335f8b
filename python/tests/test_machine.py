"""dropkit.machine(): the machine kind the benchmarks and the experiments record, the same as
`lscpu` says and as `dropkit bench --json` writes."""

import json
import os
import shutil
import subprocess

import pytest

import dropkit


def test_fields_and_kind():
    m = dropkit.machine()
    assert set(m) == {"cpu", "vendor", "family", "model", "kind", "isa"}
    assert m["kind"] == f"{m['vendor']} family {m['family']} model {m['model']}"
    assert m["isa"] in ("avx512", "avx2", "scalar")


@pytest.mark.skipif(shutil.which("lscpu") is None, reason="no lscpu")
def test_as_lscpu_names_it():
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True,
                         env={**os.environ, "LC_ALL": "C"}).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    m = dropkit.machine()
    if "Vendor ID" in fields:
        assert m["vendor"] == fields["Vendor ID"]
    if "CPU family" in fields:
        assert m["family"] == fields["CPU family"]
    if "Model" in fields:
        assert m["model"] == fields["Model"]


def test_as_the_cli_records_it(cli):
    j = json.loads(subprocess.run([cli, "bench", "kernels", "--sizes", "4096", "--reps", "1",
                                   "--threads", "1", "--json"],
                                  capture_output=True, text=True, check=True).stdout)
    m = dropkit.machine()
    assert (j["cpu_vendor"], j["cpu_family"], j["cpu_model"], j["cpu"], j["isa"]) == \
        (m["vendor"], m["family"], m["model"], m["cpu"], m["isa"])
