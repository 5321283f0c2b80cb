"""wmil_core.machine: what a benchmark records about its machine, and the bfloat16 warning."""

import subprocess
import sys
import warnings

import pytest
import torch
from agent_harness import MODES, TINY

from wmil_core import machine
from wmil_core.agents.iqmpc import IQMPC, IQMPCConfig
from wmil_core.config import from_dict


def test_cpu_model_reads_the_model_name(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9999\n"
                 "flags\t\t: fpu avx2\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 9999\n")
    assert machine.cpu_model(str(f)) == "AMD EPYC 9999"


def test_cpu_model_falls_back_without_cpuinfo(tmp_path):
    name = machine.cpu_model(str(tmp_path / "missing"))
    assert isinstance(name, str) and name


def test_import_does_not_load_torch():
    code = "import sys, wmil_core.machine as m; i = m.machine_info(); " \
           "assert 'torch' not in sys.modules; assert 'cpu_capability' not in i; print(i['cpu'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()


def test_machine_info_with_torch_names_its_kernels():
    info = machine.machine_info()
    assert info["cores"] >= 1 and info["cpu"]
    assert info["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert isinstance(info["amx"], bool) and isinstance(info["avx512_bf16"], bool)


@pytest.mark.parametrize("amx,avx512_bf16,native", [(False, False, False), (True, False, True),
                                                    (False, True, True)])
def test_native_bfloat16_needs_amx_or_avx512_bf16(monkeypatch, amx, avx512_bf16, native):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    assert machine.native_bfloat16_matmul() is native


def _build(precision: str) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        IQMPC(MODES["state"], 2, 50, from_dict(IQMPCConfig, {**TINY, "precision": precision}))
    return [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


def test_bfloat16_on_a_cpu_without_it_warns(monkeypatch):
    monkeypatch.setattr(machine, "native_bfloat16_matmul", lambda: False)
    msgs = _build("bfloat16")
    assert len(msgs) == 1 and "emulated" in msgs[0] and "float32" in msgs[0]
    assert _build("float32") == []


def test_bfloat16_on_a_cpu_with_it_is_quiet(monkeypatch):
    monkeypatch.setattr(machine, "native_bfloat16_matmul", lambda: True)
    assert _build("bfloat16") == []
