"""safetensors reader/writer round trips and the reduced-precision float codecs."""

import json
import math
import struct

import numpy as np
import pytest

from xfmr import safetensors as st


# ---- codecs, checked against formulas written independently of the module ------------


def e4m3fn_value(code: int) -> float:
    """E4M3FN by the OCP FP8 spec: bias 7, no infinities, S.1111.111 is NaN."""
    sign = -1.0 if code & 0x80 else 1.0
    exp, man = (code >> 3) & 0xF, code & 0x7
    if exp == 0xF and man == 0x7:
        return math.nan
    if exp == 0:
        return sign * man * 2.0 ** -9  # subnormal: 0.mmm * 2^(1-7)
    # Normal: build the float32 bit pattern and reinterpret it.
    bits = (0x80000000 if sign < 0 else 0) | ((exp - 7 + 127) << 23) | (man << 20)
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def e5m2_value(code: int) -> float:
    """E5M2 is the top byte of an IEEE binary16."""
    return float(np.array([code << 8], dtype=np.uint16).view(np.float16)[0])


def test_e4m3_all_256_codes():
    got = st.decode_f8_e4m3(np.arange(256, dtype=np.uint8), np.float64)
    for code in range(256):
        want = e4m3fn_value(code)
        if math.isnan(want):
            assert math.isnan(got[code]), hex(code)
        else:
            assert got[code] == want, hex(code)
            assert math.copysign(1.0, got[code]) == math.copysign(1.0, want), hex(code)
    # Landmarks of the format.
    assert got[0x7E] == 448.0 and got[0xFE] == -448.0
    assert got[0x01] == 2.0 ** -9 and got[0x08] == 2.0 ** -6 and got[0x38] == 1.0
    assert np.isnan(got[[0x7F, 0xFF]]).all() and np.isfinite(np.delete(got, [0x7F, 0xFF])).all()


def test_e5m2_all_256_codes():
    got = st.decode_f8_e5m2(np.arange(256, dtype=np.uint8), np.float64)
    for code in range(256):
        want = e5m2_value(code)
        assert (math.isnan(want) and math.isnan(got[code])) or got[code] == want, hex(code)


def test_bf16_decode_all_65536_codes():
    codes = np.arange(65536, dtype=np.uint32)
    want = (codes << 16).astype(np.uint32).view(np.float32)
    got = st.decode_bf16(codes.astype(np.uint16))
    same = (got.view(np.uint32) == want.view(np.uint32)) | (np.isnan(got) & np.isnan(want))
    assert same.all()


def _nearest_even(x: float, values: np.ndarray, codes: np.ndarray) -> int:
    """Brute force round-to-nearest, ties to the even code."""
    d = np.abs(values - x)
    best = np.flatnonzero(d == d.min())
    if len(best) > 1:
        best = [b for b in best if codes[b] % 2 == 0]
    return int(codes[best[0]])


def test_e4m3_encode_round_to_nearest_even_and_saturate():
    pos = np.array([e4m3fn_value(c) for c in range(0x7F)])
    codes = np.arange(0x7F)
    mids = (pos[:-1] + pos[1:]) / 2
    rng = np.random.default_rng(0)
    xs = np.concatenate([pos, mids, np.nextafter(mids, 0), np.nextafter(mids, 1e9),
                         rng.uniform(0, 448, 2000), 2.0 ** rng.uniform(-12, 8.8, 2000)])
    xs = xs[xs <= 448]
    want = np.array([_nearest_even(x, pos, codes) for x in xs], dtype=np.uint8)
    assert (st.encode_f8_e4m3(xs) == want).all()
    assert (st.encode_f8_e4m3(-xs) == (want | 0x80)).all()
    # Saturation (E4M3FN has no infinity), NaN, signed zero.
    big = np.array([448.0, 449.0, 464.0, 500.0, 1e30, np.inf])
    assert (st.encode_f8_e4m3(big) == 0x7E).all()
    assert (st.encode_f8_e4m3(-big) == 0xFE).all()
    assert st.encode_f8_e4m3(np.array([np.nan]))[0] & 0x7F == 0x7F
    assert list(st.encode_f8_e4m3(np.array([0.0, -0.0]))) == [0x00, 0x80]
    # Every code survives decode -> encode.
    allc = np.arange(256, dtype=np.uint8)
    assert (st.encode_f8_e4m3(st.decode_f8_e4m3(allc, np.float64)) == allc).all()


def test_e5m2_encode():
    finite = np.array([e5m2_value(c) for c in range(0x7C)])
    codes = np.arange(0x7C)
    mids = (finite[:-1] + finite[1:]) / 2
    xs = np.concatenate([finite, mids, np.nextafter(mids, 0), np.nextafter(mids, 1e9)])
    want = np.array([_nearest_even(x, finite, codes) for x in xs], dtype=np.uint8)
    assert (st.encode_f8_e5m2(xs) == want).all()
    # Overflow goes to infinity from max + half an ulp (61440, a tie to the even code 0x7C).
    assert list(st.encode_f8_e5m2(np.array([57344.0, 61439.0, 61440.0, 1e9, -np.inf]))) == \
        [0x7B, 0x7B, 0x7C, 0x7C, 0xFC]


def test_bf16_encode_round_to_nearest_even():
    x32 = np.array([1.0, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, -2.5, 3.4e38],
                   dtype=np.float32)
    assert [hex(v) for v in st.encode_bf16(x32)] == \
        ["0x3f80", "0x3f80", "0x3f82", "0x3f81", "0xc020", "0x7f80"]
    # float64 input is rounded once: this value is above the tie, float32 would make it a tie.
    assert st.encode_bf16(np.array([1 + 2 ** -8 + 2 ** -40]))[0] == 0x3F81
    assert np.isnan(st.decode_bf16(st.encode_bf16(np.array([np.nan], np.float32))))[0]
    rng = np.random.default_rng(1)
    v = rng.standard_normal(10000).astype(np.float32)
    back = st.decode_bf16(st.encode_bf16(v))
    assert np.all(np.abs(back - v) <= np.abs(v) * 2.0 ** -8)


# ---- files ---------------------------------------------------------------------------


def test_round_trip_every_dtype(tmp_path):
    rng = np.random.default_rng(2)
    f = rng.standard_normal((3, 5))
    tensors = {
        "f64": f,
        "f32": f.astype(np.float32),
        "f16": f.astype(np.float16),
        "bf16": ("BF16", f.astype(np.float32)),
        "e4m3": ("F8_E4M3", f * 10),
        "e5m2": ("F8_E5M2", f * 10),
        "i64": np.arange(-3, 4, dtype=np.int64),
        "i32": np.arange(6, dtype=np.int32).reshape(2, 3),
        "i8": np.array([-128, 0, 127], dtype=np.int8),
        "u8": np.array([0, 255], dtype=np.uint8),
        "scalar": np.array(2.5, dtype=np.float32),
        "empty": np.zeros((0, 4), dtype=np.float32),
    }
    path = tmp_path / "t.safetensors"
    st.save_file(path, tensors, metadata={"format": "pt"})
    r = st.SafetensorsFile(path)
    assert r.metadata == {"format": "pt"}
    assert set(r.keys()) == set(tensors)
    assert r.get("f64").dtype == np.float64 and np.array_equal(r.get("f64"), f)
    assert np.array_equal(r.get("f32"), f.astype(np.float32))
    assert np.array_equal(r.get("f16"), f.astype(np.float16))
    assert r.info("bf16").dtype == "BF16" and r.raw("bf16").dtype == np.uint16
    assert np.array_equal(r.get("bf16"), st.decode_bf16(st.encode_bf16(f.astype(np.float32))))
    assert np.array_equal(r.get("e4m3", np.float64),
                          st.decode_f8_e4m3(st.encode_f8_e4m3(f * 10), np.float64))
    assert np.array_equal(r.get("e5m2"), st.decode_f8_e5m2(st.encode_f8_e5m2(f * 10)))
    for name in ("i64", "i32", "i8", "u8"):
        assert r.get(name).dtype == tensors[name].dtype
        assert np.array_equal(r.get(name), tensors[name])
    assert r.get("scalar").shape == () and r.get("scalar") == 2.5
    assert r.get("empty").shape == (0, 4)
    # The header is padded so the data section starts 8-byte aligned.
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))
    assert (8 + n) % 8 == 0
    assert header["i32"] == {"dtype": "I32", "shape": [2, 3],
                             "data_offsets": header["i32"]["data_offsets"]}


def test_streaming_writer_pieces_and_order(tmp_path):
    specs = [("a", "F32", (4, 3)), ("b", "BF16", (2,))]
    path = tmp_path / "s.safetensors"
    a = np.arange(12, dtype=np.float32).reshape(4, 3)
    with st.SafetensorsWriter(path, specs) as w:
        w.write("a", a[:1])
        w.write("a", a[1:])
        with pytest.raises(ValueError, match="out of order|unknown"):
            w.write("a", a[:1])
        w.write("b", np.array([1.5, -2.0]))
    r = st.SafetensorsFile(path)
    assert np.array_equal(r.get("a"), a) and list(r.get("b")) == [1.5, -2.0]

    with pytest.raises(ValueError, match="out of order"):
        with st.SafetensorsWriter(tmp_path / "x.safetensors", specs) as w:
            w.write("b", np.zeros(2))
    assert not (tmp_path / "x.safetensors").exists()  # aborted writes leave nothing behind
    w = st.SafetensorsWriter(tmp_path / "y.safetensors", specs)
    w.write("a", a)
    with pytest.raises(ValueError, match="incomplete"):
        w.close()
    with pytest.raises(ValueError, match="bytes"):
        with st.SafetensorsWriter(tmp_path / "z.safetensors", specs) as w:
            w.write("a", np.zeros((5, 3), np.float32))


def test_reader_rejects_damaged_files(tmp_path):
    path = tmp_path / "ok.safetensors"
    st.save_file(path, {"w": np.ones((4, 4), np.float32)})
    data = path.read_bytes()
    cases = {
        "short": data[:5],
        "truncated": data[:-8],
        "huge_header": struct.pack("<Q", 1 << 40) + data[8:],
        "not_json": struct.pack("<Q", 4) + b"nope",
    }
    for name, blob in cases.items():
        bad = tmp_path / f"{name}.safetensors"
        bad.write_bytes(blob)
        with pytest.raises(ValueError):
            st.SafetensorsFile(bad)
    header = json.dumps({"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 60]}}).encode()
    bad = tmp_path / "size.safetensors"
    bad.write_bytes(struct.pack("<Q", len(header)) + header + bytes(60))
    with pytest.raises(ValueError, match="needs 64 bytes"):
        st.SafetensorsFile(bad)


def test_sharded_folder(tmp_path):
    st.save_file(tmp_path / "model-00001-of-00002.safetensors", {"a": np.ones(3, np.float32)})
    st.save_file(tmp_path / "model-00002-of-00002.safetensors", {"b": np.zeros(2, np.float32)})
    index = {"metadata": {"total_size": 20},
             "weight_map": {"a": "model-00001-of-00002.safetensors",
                            "b": "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    folder = st.open_checkpoint(str(tmp_path))
    assert sorted(folder.keys()) == ["a", "b"]
    assert list(folder.get("a")) == [1, 1, 1] and folder.info("b").shape == (2,)
    with pytest.raises(KeyError):
        folder.get("c")
    with pytest.raises(FileNotFoundError):
        st.SafetensorsFolder(str(tmp_path / "nothing"))
