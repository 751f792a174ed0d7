"""Writes a corpus of broken checkpoint folders, one per failure xfmr-import
must report cleanly, next to a valid base (a tiny synthetic Llama).

Usage: make_bad_checkpoints.py OUT_DIR
Each case is OUT_DIR/<case>; OUT_DIR/good is the untouched base.
"""
import json
import os
import shutil
import struct
import sys

from xfmr import synth


def read_raw(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def write_raw(path, header, payload, header_text=None, length=None):
    text = header_text if header_text is not None else json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text) if length is None else length))
        f.write(text)
        f.write(payload)


def clone(out, base, name):
    path = os.path.join(out, name)
    shutil.copytree(base, path)
    return path


def edit_config(path, **changes):
    cfg_path = os.path.join(path, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    for key, value in changes.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)


def edit_weights(path, change):
    """change(header, payload) -> (header, payload[, header_text, length])."""
    st = os.path.join(path, "model.safetensors")
    header, payload = read_raw(st)
    write_raw(st, *change(header, payload))


def drop(name):
    """An edit that removes tensor `name` and re-packs the others contiguously."""
    def change(h, p):
        del h[name]
        entries = sorted((v["data_offsets"][0], k) for k, v in h.items() if k != "__metadata__")
        new, chunks, pos = {}, [], 0
        for _, k in entries:
            b, e = h[k]["data_offsets"]
            chunks.append(p[b:e])
            new[k] = dict(h[k], data_offsets=[pos, pos + e - b])
            pos += e - b
        return new, b"".join(chunks)
    return change


def first_tensor(header):
    return sorted((v["data_offsets"][0], k) for k, v in header.items() if k != "__metadata__")[0][1]


def main(out):
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    base = os.path.join(out, "good")
    synth.generate(base, "llama", preset="tiny", dtype="f32", seed=0, progress=False)

    # Configs.
    os.remove(os.path.join(clone(out, base, "no_config"), "config.json"))
    with open(os.path.join(clone(out, base, "config_not_json"), "config.json"), "w") as f:
        f.write("{ not json")
    edit_config(clone(out, base, "unknown_arch"), architectures=["GPT2LMHeadModel"], model_type="gpt2")
    edit_config(clone(out, base, "zero_heads"), num_attention_heads=0)
    edit_config(clone(out, base, "heads_not_dividing"), num_attention_heads=5, num_key_value_heads=5)
    edit_config(clone(out, base, "kv_heads_not_dividing"), num_key_value_heads=3)
    edit_config(clone(out, base, "negative_theta"), rope_theta=-1.0)
    edit_config(clone(out, base, "wrong_type"), hidden_size="sixty-four")
    # Found by hand: llvm::json::parse recursed ~60,000 levels and overflowed the stack.
    with open(os.path.join(clone(out, base, "config_deep_nesting"), "config.json"), "w") as f:
        f.write('{"a": ' + "[" * 60000 + "]" * 60000 + "}")
    # A config that is a FIFO would block the reader forever.
    fifo_config = os.path.join(clone(out, base, "config_fifo"), "config.json")
    os.remove(fifo_config)
    os.mkfifo(fifo_config)
    # A context that overflows the cache size (and the runtime's int32 positions).
    edit_config(clone(out, base, "huge_max_positions"), max_position_embeddings=4611686018427387904)

    # Tensors that do not match the config.
    edit_weights(clone(out, base, "missing_tensor"), drop("model.layers.0.self_attn.q_proj.weight"))
    edit_config(clone(out, base, "misshaped_tensor"), intermediate_size=48)

    # Broken safetensors files.
    st = "model.safetensors"
    with open(os.path.join(clone(out, base, "truncated_file"), st), "wb") as f:
        f.write(b"\x01\x02\x03")
    edit_weights(clone(out, base, "header_length_zero"), lambda h, p: (h, p, b"", 0))
    edit_weights(clone(out, base, "header_length_past_end"), lambda h, p: (h, p, None, 1 << 20))
    edit_weights(clone(out, base, "header_length_above_limit"), lambda h, p: (h, p, None, 1 << 40))
    edit_weights(clone(out, base, "header_not_json"), lambda h, p: (h, p, b"[1, 2,"))
    edit_weights(clone(out, base, "header_not_object"), lambda h, p: (h, p, b"[1, 2]"))
    deep = b'{"__metadata__": {"x": ' + b"[" * 60000 + b"]" * 60000 + b"}}"
    edit_weights(clone(out, base, "header_deep_nesting"), lambda h, p: (h, p, deep))

    def set_dtype(h, p):
        h[first_tensor(h)]["dtype"] = "F64"
        return h, p
    edit_weights(clone(out, base, "unknown_dtype"), set_dtype)

    def negative_shape(h, p):
        h[first_tensor(h)]["shape"] = [-1, 4]
        return h, p
    edit_weights(clone(out, base, "negative_shape"), negative_shape)

    def overflow_shape(h, p):
        h[first_tensor(h)]["shape"] = [2**40, 2**40]
        return h, p
    edit_weights(clone(out, base, "overflowing_shape"), overflow_shape)

    def shift(delta_begin, delta_end, name_index=1):
        def change(h, p):
            order = sorted((v["data_offsets"][0], k) for k, v in h.items() if k != "__metadata__")
            k = order[name_index][1]
            b, e = h[k]["data_offsets"]
            h[k]["data_offsets"] = [b + delta_begin, e + delta_end]
            return h, p
        return change
    edit_weights(clone(out, base, "overlapping_offsets"), shift(-4, -4))
    edit_weights(clone(out, base, "gap_in_offsets"), shift(4, 4))
    edit_weights(clone(out, base, "size_mismatch"), shift(0, -4))

    def past_end(h, p):
        order = sorted((v["data_offsets"][0], k) for k, v in h.items() if k != "__metadata__")
        k = order[-1][1]
        b, e = h[k]["data_offsets"]
        h[k]["data_offsets"] = [b, e + 4096]
        return h, p
    edit_weights(clone(out, base, "offsets_past_end"), past_end)
    edit_weights(clone(out, base, "trailing_bytes"), lambda h, p: (h, p + b"\0" * 8))

    # Sharded indexes.
    def index_case(name, weight_map_edit, raw=None):
        path = clone(out, base, name)
        header, _ = read_raw(os.path.join(path, st))
        weight_map = {k: st for k in header if k != "__metadata__"}
        weight_map_edit(weight_map, path)
        os.rename(os.path.join(path, st), os.path.join(path, "model-00001-of-00001.safetensors"))
        for k in list(weight_map):
            if weight_map[k] == st:
                weight_map[k] = "model-00001-of-00001.safetensors"
        text = raw(weight_map) if raw else json.dumps({"metadata": {}, "weight_map": weight_map})
        with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
            f.write(text)

    index_case("index_missing_shard", lambda m, p: m.__setitem__("model.norm.weight", "model-00002-of-00002.safetensors"))
    index_case("index_absolute_path", lambda m, p: m.__setitem__("model.norm.weight", "/etc/passwd"))
    index_case("index_parent_path", lambda m, p: m.__setitem__("model.norm.weight", "../good/model.safetensors"))

    def twice(m):
        body = ", ".join('"%s": "%s"' % (k, v) for k, v in m.items())
        return '{"metadata": {}, "weight_map": {"model.norm.weight": "%s", %s}}' % (m["model.norm.weight"], body)
    index_case("index_tensor_twice", lambda m, p: None, raw=twice)

    # An FP8 checkpoint whose weight lost its scale.
    fp8 = os.path.join(out, "fp8_missing_scale")
    synth.generate(fp8, "deepseek_v3", preset="tiny", dtype="fp8", seed=0, progress=False)
    edit_weights(fp8, drop("model.layers.0.self_attn.o_proj.weight_scale_inv"))


if __name__ == "__main__":
    main(sys.argv[1])
