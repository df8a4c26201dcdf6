"""Test firmware for MCU targets (nncc/firmware.py): build with the cross compiler, run in QEMU, and
check that every output equals the host build of the same C bit for bit (both sides use
-ffp-contract=off). Also: target descriptions agree with their linker scripts, models too big for
the real board are refused, and the CLI's --target paths. int8 builds (the MLPerf Tiny models,
KWS with its float Softmax tail, and LeNet-5) run on cortex-m4/m7/m0plus/m33 and rv32imac and
equal the host build exactly. Build+run tests skip, with the apt line in the reason, when a cross compiler or QEMU is
missing."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from onnx import helper

from nncc import firmware
from nncc.bench import bench
from nncc.cli import main
from nncc.errors import DoesNotFit, UsageError
from nncc.host import HostModel
from nncc.quant.quantize import QuantOptions
from tests.util import (
    FIXTURES,
    MLPERF,
    MLPERF_RANGES,
    conv_relu,
    have,
    make_model,
    mlperf_inputs,
    save,
    uniform_inputs,
)

pytestmark = pytest.mark.cross


def residual(tmp_path):
    """Conv -> Relu -> Conv, added back to the input: a residual block with two outputs."""
    rng = np.random.default_rng(1)
    nodes = [helper.make_node("Conv", ["x", "W1"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Conv", ["r", "W2", "B2"], ["b"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["b", "x"], ["y"]),
             helper.make_node("Mul", ["y", "r"], ["z"])]
    inits = {"W1": rng.standard_normal((4, 4, 3, 3)).astype(np.float32) * 0.3,
             "W2": rng.standard_normal((4, 4, 3, 3)).astype(np.float32) * 0.3,
             "B2": rng.standard_normal(4).astype(np.float32)}
    m = make_model(nodes, [("x", (1, 4, 8, 8))], [("y", None), ("z", None)], inits)
    return save(m, tmp_path, "residual.onnx")


MODELS = {
    "conv_relu": conv_relu,
    "residual": residual,
    "lenet5": lambda tmp: FIXTURES / "zoo" / "lenet5_bn.onnx",
    "mlperf_kws": lambda tmp: MLPERF / "mlperf_kws_dscnn.onnx",
    "mlperf_ad": lambda tmp: MLPERF / "mlperf_ad_fcae.onnx",
}
MAIN_TARGETS = ["cortex-m4", "cortex-m7", "rv32imac"]


def need(target: str) -> firmware.Target:
    t = firmware.load_target(target)
    missing = t.missing_tools()
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed: apt-get install --no-install-recommends "
                    f"{' '.join(t.apt)} (or `make toolchains`)")
    return t


def build_and_run(model_path, tmp_path, target: str):
    t = firmware.load_target(target)
    res = firmware.compile_firmware(model_path, tmp_path / target, target, build_elf=False)
    elf = firmware.build(res.out_dir, t, "EXTRA_CFLAGS=-Werror")  # warning-free, startup code too
    res.report = firmware.add_sizes(res.out_dir, elf, t)
    rr = firmware.run(res.out_dir, res.report)
    assert rr.status == 0, rr.stdout[-2000:]
    assert "nncc: OK" in rr.stdout
    # Independent of the firmware's own comparison: the printed bits against a fresh host build.
    host = HostModel(res.out_dir, res.report)
    try:
        want = host.run(firmware.default_samples(res.report["inputs"])[0])
    finally:
        host.close()
    for t in res.report["outputs"]:
        got = rr.outputs[0][t["name"]]
        assert got is not None, f"output {t['name']} missing from the QEMU output"
        assert np.array_equal(got.view(np.uint32), want[t["name"]].view(np.uint32)), t["name"]
    return res


@pytest.mark.parametrize("int8", [False, True])
def test_firmware_reports_a_mismatch(tmp_path, int8):
    """The firmware's own check fails when an output differs: one expected value of main.c moved
    (float: 3 units in the last place; int8: by 5) makes `make run` fail (the firmware exits
    with 1), prints MISMATCH, and that largest difference and count on the output's summary
    line."""
    need("cortex-m4")
    t = firmware.load_target("cortex-m4")
    kw = {"quant": QuantOptions(samples=uniform_inputs(conv_relu(tmp_path), 4, 0, -1.0, 1.0))} if int8 else {}
    res = firmware.compile_firmware(conv_relu(tmp_path), tmp_path / "fw", "cortex-m4", build_elf=False, **kw)
    main_c = res.out_dir / "main.c"
    text = main_c.read_text()
    m = re.search(r"want0\[N_SAMPLES\]\[(\d+)\] = \{\n\{\n\s*([-0-9.e]+)(f?)", text)
    n, first = int(m.group(1)), m.group(2)
    if int8:
        moved, diff = str(int(first) + (5 if int(first) < 100 else -5)), "abs diff 5"
    else:
        v = np.float32(first)
        for _ in range(3):
            v = np.nextafter(v, np.float32(np.inf), dtype=np.float32)
        moved, diff = f"{float(v):.9g}", "ulp diff 3"
    main_c.write_text(text[:m.start(2)] + moved + text[m.end(2):])
    firmware.build(res.out_dir, t, "EXTRA_CFLAGS=-Werror")
    rr = firmware.run(res.out_dir, res.report)
    assert rr.status != 0 and "nncc: MISMATCH" in rr.stdout, rr.stdout[-2000:]
    assert f"output 0: max {diff}, 1 of {n} values differ" in rr.stdout, rr.stdout[-2000:]


@pytest.mark.parametrize("target", MAIN_TARGETS)
@pytest.mark.parametrize("model", sorted(MODELS))
def test_matches_host_bit_for_bit(tmp_path, model, target):
    need(target)
    res = build_and_run(MODELS[model](tmp_path), tmp_path, target)
    r = res.report
    assert r["target"] == target and r["board"]["name"]
    assert r["flash_bytes"] >= r["weights_bytes"] + r["test_data_bytes"] + r["code_bytes"] - 8
    assert 0 < r["code_bytes"] < 64 * 1024
    assert r["ram_bytes"] >= r["arena_bytes"] + r["stack_bytes"]
    report_file = json.loads((res.out_dir / "report.json").read_text())
    assert report_file["flash_bytes"] == r["flash_bytes"]


@pytest.mark.parametrize("target", ["cortex-m33", "cortex-m0plus", "rv32imafc"])
def test_other_targets(tmp_path, target):
    need(target)
    build_and_run(conv_relu(tmp_path), tmp_path, target)


def test_target_files_agree():
    """target.json memory sizes are those of the MEMORY blocks in qemu.ld and board.ld."""
    units = {"": 1, "K": 1024, "M": 1024 * 1024}
    for name in firmware.target_names():
        t = firmware.load_target(name)
        for key in ("qemu", "board"):
            text = (t.dir / t.spec[key]["linker_script"]).read_text()
            sizes = {region: int(n) * units[u] for region, n, u in
                     re.findall(r"(FLASH|RAM)\s*\([a-z]+\)\s*:.*?LENGTH\s*=\s*(\d+)([KM]?)", text)}
            assert sizes == {"FLASH": t.spec[key]["flash_bytes"], "RAM": t.spec[key]["ram_bytes"]}, name
        assert (t.common_dir() / "sections.ld").is_file()
        assert "{elf}" in t.board["flash_command"]


def test_unknown_target(tmp_path):
    with pytest.raises(UsageError, match="available: host, .*cortex-m4"):
        firmware.load_target("cortex-m99")
    assert main(["compile", str(conv_relu(tmp_path)), "-o", str(tmp_path / "p"), "--target", "z80"]) == 1


@pytest.mark.parametrize("model,target,what", [
    ("mlperf_ic_resnet8.onnx", "rv32imafc", r"135,168 B of RAM .* has 65,536 B"),
    ("mlperf_ad_fcae.onnx", "cortex-m33", r"1,063,456 B of weights .* has 524,288 B of flash"),
])
def test_too_big_is_refused(tmp_path, model, target, what):
    with pytest.raises(DoesNotFit, match=what):
        firmware.compile_firmware(MLPERF / model, tmp_path / "p", target)
    assert not (tmp_path / "p").exists()


def test_cli_compile_and_validate(tmp_path, capsys):
    need("cortex-m4")
    model = str(conv_relu(tmp_path))
    out = tmp_path / "fw"
    assert main(["compile", model, "-o", str(out), "--target", "cortex-m4"]) == 0
    text = capsys.readouterr().out
    assert "NUCLEO-L4R5ZI" in text and "ELF flash" in text
    files = set((out / ".nncc-files").read_text().split())
    assert {"main.c", "startup.c", "sections.ld", "qemu.ld", "board.ld", "Makefile"} <= files
    assert main(["compile", model, "-o", str(out), "--target", "cortex-m4", "--force"]) == 0
    assert main(["validate", model, "--target", "cortex-m4"]) == 0
    text = capsys.readouterr().out
    assert "host C (exact)" in text and "PASS" in text


@pytest.mark.parametrize("target", ["host", "cortex-m4", "rv32imac"])
def test_bench(tmp_path, target):
    if target == "host":
        if not have("valgrind"):
            pytest.skip("valgrind not installed (apt-get install valgrind)")
    else:
        need(target)
    b = bench(conv_relu(tmp_path), target)
    assert b.macs == 2700
    # A MAC costs at least a multiply and an add; soft float (rv32imac) costs far more.
    assert 2 * b.macs < b.instructions < (400 if target == "rv32imac" else 60) * b.macs
    assert b.instructions == bench(conv_relu(tmp_path), target).instructions  # deterministic


# int8 builds: name -> model file
INT8_MODELS = {
    "kws": MLPERF / "mlperf_kws_dscnn.onnx",
    "ad": MLPERF / "mlperf_ad_fcae.onnx",
    "lenet5": FIXTURES / "zoo" / "lenet5_bn.onnx",
    "vww": MLPERF / "mlperf_vww_mbv1_025.onnx",
    "ic": MLPERF / "mlperf_ic_resnet8.onnx",
}
INT8_TARGETS = ["cortex-m4", "cortex-m7", "cortex-m0plus", "cortex-m33", "rv32imac"]


def int8_data(name: str, n: int, seed: int) -> list[dict]:
    """Uniform draws over the model's input range (float; the firmware quantizes them): the
    documented one of an MLPerf model, [0, 1] (images) for LeNet-5."""
    path = INT8_MODELS[name]
    if path.stem in MLPERF_RANGES:
        return mlperf_inputs(path.stem, n, seed)
    return uniform_inputs(path, n, seed, 0.0, 1.0)


def int8_quant(name: str) -> QuantOptions:
    return QuantOptions(samples=int8_data(name, 4, 0))


def fits(report: dict, mem: dict, t: firmware.Target) -> bool:
    return (report["arena_bytes"] + t.stack_bytes <= mem["ram_bytes"]
            and report["weights_bytes"] <= mem["flash_bytes"])


@pytest.mark.parametrize("target", INT8_TARGETS)
@pytest.mark.parametrize("name", sorted(INT8_MODELS))
def test_int8_matches_host_exactly(tmp_path, name, target):
    """QEMU output == the host build's output, every int8 code (and the float Softmax of KWS)
    equal; where the model exceeds the board or the emulated machine, the exact refusal."""
    t = need(target)
    path = INT8_MODELS[name]
    quant, samples = int8_quant(name), int8_data(name, 2, 1)
    rep = firmware.compile_firmware(path, tmp_path / "probe", target, samples, build_elf=False,
                                    check=False, quant=quant).report
    assert rep["precision"] == "int8" and rep["inputs"][0]["dtype"] == "int8"
    if not fits(rep, t.board, t):  # AD int8 on cortex-m0plus: 279,240 B of weights > 256 KiB
        with pytest.raises(DoesNotFit, match=r"B of (weights|RAM) .* \(" + target):
            firmware.compile_firmware(path, tmp_path / "p", target, samples, quant=quant)
        return
    # in-place int8 convs: 8,640 B of arena (the kernels' scratch included) + stack fit even the
    # 16 KiB microbit
    if name == "kws":
        assert rep["arena_bytes"] == 8_640 and fits(rep, t.qemu, t)
    if not fits(rep, t.qemu, t):
        with pytest.raises(DoesNotFit, match=rf"QEMU {t.qemu['command'][2]} machine"):
            firmware.run_on_target(path, samples, target, tmp_path / "p", quant=quant)
        return
    res = int8_qemu_equals_host(path, samples, target, tmp_path / "p", quant)
    if name == "kws":  # its final Softmax runs in float: bit-exact too
        assert res.report["outputs"][0]["dtype"] == "float32"


def int8_qemu_equals_host(path, samples: list[dict], target: str, out_dir, quant: QuantOptions,
                          cflags: str = ""):
    """The int8 firmware of `path`, built warning-free (and with `cflags`), runs in QEMU on
    `samples`; every output of every sample equals a fresh host build's (independent of main.c)
    bit for bit -> the firmware build. Built with NNCC_GUARD: no layer writes outside its output
    and scratch, nor past an output buffer."""
    res, embedded, rr = firmware.run_on_target(path, samples, target, out_dir, quant=quant,
                                               make_args=(f"EXTRA_CFLAGS=-Werror -DNNCC_GUARD {cflags}",))
    assert rr.status == 0 and "nncc: OK" in rr.stdout, rr.stdout[-2000:]
    assert len(rr.outputs) == len(samples)
    host = HostModel(res.out_dir, res.report)
    try:
        for s, got in zip(embedded, rr.outputs, strict=True):
            assert s[res.report["inputs"][0]["name"]].dtype == np.int8
            want = host.run(s)
            for o in res.report["outputs"]:
                assert got[o["name"]] is not None and got[o["name"]].dtype == np.dtype(o["dtype"])
                assert got[o["name"]].tobytes() == want[o["name"]].tobytes(), o["name"]
    finally:
        host.close()
    return res


def test_int8_cli(tmp_path, capsys):
    """`nncc compile|validate|bench --target ... --quantize int8 --calib C.npz`."""
    need("cortex-m4")
    model = str(conv_relu(tmp_path))
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", x=rng.standard_normal((4, 1, 3, 9, 9)).astype(np.float32))
    q = ["--quantize", "int8", "--calib", str(tmp_path / "calib.npz")]
    assert main(["compile", model, "-o", str(tmp_path / "fw"), "--target", "cortex-m4", *q]) == 0
    assert "ELF flash" in capsys.readouterr().out
    main_c = (tmp_path / "fw" / "main.c").read_text()
    assert "static const int8_t in0" in main_c and "check_i8" in main_c and "check_f32" not in main_c
    assert firmware.run(tmp_path / "fw", json.loads((tmp_path / "fw" / "report.json").read_text())).status == 0
    assert main(["validate", model, "--target", "cortex-m4", *q]) == 0
    text = capsys.readouterr().out
    assert "host C (exact)" in text and "reference (integer)" in text and "PASS" in text
    assert main(["validate", model, *q]) == 0  # the host path handles int8 too
    assert main(["bench", model, "--target", "cortex-m4", *q]) == 0
    out = capsys.readouterr().out
    assert "instructions per MAC" in out and "cycles per inference" in out
    qo = QuantOptions(samples=[{"x": rng.standard_normal((1, 3, 9, 9)).astype(np.float32)} for _ in range(3)])
    b = bench(model, "cortex-m4", quant=qo)
    assert b.macs > 0 and b.instructions == bench(model, "cortex-m4", quant=qo).instructions  # deterministic


@pytest.mark.parametrize("opt", ["-O0", "-Os", "-fno-omit-frame-pointer"])
@pytest.mark.parametrize("name", ["kws", "lenet5"])
def test_int8_other_optimization_levels(tmp_path, name, opt):
    """A user's unoptimized (debug), size or frame-pointer build on cortex-m4: warning-free and
    the same codes. A frame pointer (always kept at -O0) leaves too few registers for the
    assembly loops (conv, Gemm): their C forms take over (NNCC_NO_ASM14, which the firmware
    Makefile defines for -fno-omit-frame-pointer)."""
    need("cortex-m4")
    int8_qemu_equals_host(INT8_MODELS[name], int8_data(name, 2, 1), "cortex-m4", tmp_path / "p",
                          int8_quant(name), opt)
