"""Cairn's Python inference worker: one process, one pyfunc model.

Started by cairn-infer-python as `python -u -c <this> <model_dir> <input_kind>`. Frames on
stdin/stdout are a 4-byte little-endian header length, a JSON header, then the tensors'
bytes back to back (OIP binary layout: little-endian elements, BYTES as 4-byte length +
bytes per element). The first frame out says the model loaded (or why not).
"""

import json
import struct
import sys

UNNAMED_INPUT = "input"  # cairn_infer_python::UNNAMED_INPUT

DTYPES = {
    "BOOL": "bool", "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
    "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
    "FP16": "<f2", "FP32": "<f4", "FP64": "<f8",
}


def read_exact(stream, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = stream.read(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def send(out, header, payload=b""):
    h = json.dumps(header).encode()
    out.write(struct.pack("<I", len(h)) + h + payload)
    out.flush()


def decode(np, spec, raw):
    shape = spec["shape"]
    if spec["datatype"] == "BYTES":
        items, pos = [], 0
        while pos < len(raw):
            (n,) = struct.unpack_from("<I", raw, pos)
            items.append(raw[pos + 4:pos + 4 + n].decode("utf-8", "replace"))
            pos += 4 + n
        return np.array(items, dtype=object).reshape(shape)
    return np.frombuffer(raw, dtype=DTYPES[spec["datatype"]]).reshape(shape)


def encode(np, name, value):
    arr = np.asarray(value)
    kind = arr.dtype.kind
    if kind in "OUS":
        flat = [str(x).encode() for x in arr.ravel()]
        raw = b"".join(struct.pack("<I", len(b)) + b for b in flat)
        dt = "BYTES"
    else:
        by_kind = {
            ("b", 1): "BOOL", ("u", 1): "UINT8", ("u", 2): "UINT16", ("u", 4): "UINT32", ("u", 8): "UINT64",
            ("i", 1): "INT8", ("i", 2): "INT16", ("i", 4): "INT32", ("i", 8): "INT64",
            ("f", 2): "FP16", ("f", 4): "FP32", ("f", 8): "FP64",
        }
        dt = by_kind.get((kind, arr.dtype.itemsize))
        if dt is None:
            raise TypeError(f"output {name!r} has numpy dtype {arr.dtype}, which cannot be served")
        raw = np.ascontiguousarray(arr, dtype=DTYPES[dt] if dt != "BOOL" else "bool").tobytes()
    return {"name": name, "datatype": dt, "shape": list(arr.shape), "nbytes": len(raw)}, raw


def outputs_of(np, pd, pred):
    if isinstance(pred, dict):
        return [(str(k), v) for k, v in pred.items()]
    if isinstance(pred, pd.DataFrame):
        return [(str(c), pred[c].to_numpy()) for c in pred.columns]
    if isinstance(pred, pd.Series):
        return [("predictions", pred.to_numpy())]
    return [("predictions", np.asarray(pred))]


def infer_input(pd, arrays):
    """The `predict` argument for a model without a signature: one unnamed input, or one
    input of rank 2 or more, is the bare array; named columns of one length form a
    DataFrame (what a dataframe request sends); anything else is a dict by name."""
    if len(arrays) == 1:
        (name, value), = arrays.items()
        if name == UNNAMED_INPUT or value.ndim != 1:
            return value
    lengths = {v.shape[0] if v.ndim == 1 else -1 for v in arrays.values()}
    if len(lengths) == 1 and -1 not in lengths:
        return pd.DataFrame(arrays)
    return arrays


def main():
    model_dir, input_kind = sys.argv[1], sys.argv[2]
    out = sys.stdout.buffer
    inp = sys.stdin.buffer
    # Anything the model prints must not corrupt the frame stream.
    sys.stdout = sys.stderr
    try:
        import numpy as np
        import pandas as pd
        import mlflow.pyfunc

        model = mlflow.pyfunc.load_model(model_dir)
    except Exception as e:  # noqa: BLE001 - reported to the server verbatim
        send(out, {"error": f"{type(e).__name__}: {e}"})
        return
    send(out, {"ready": True})
    while True:
        try:
            (n,) = struct.unpack("<I", read_exact(inp, 4))
        except EOFError:
            return
        header = json.loads(read_exact(inp, n))
        # Every input's bytes are read before anything can fail, so the stream stays in
        # step whatever happens to this request.
        raw = [(spec, read_exact(inp, spec["nbytes"])) for spec in header["inputs"]]
        try:
            arrays = {spec["name"]: decode(np, spec, data) for spec, data in raw}
            if input_kind == "dataframe":
                # One column per input; [N, 1] tensors are columns of scalars, wider ones
                # columns of arrays.
                columns = {}
                for k, v in arrays.items():
                    if v.ndim == 2 and v.shape[1] == 1:
                        columns[k] = v.reshape(-1)
                    elif v.ndim > 1:
                        columns[k] = list(v)
                    else:
                        columns[k] = v
                data = pd.DataFrame(columns)
            elif input_kind == "array":
                data = next(iter(arrays.values()))
            elif input_kind == "infer":
                data = infer_input(pd, arrays)
            else:
                data = arrays
            pred = model.predict(data, params=header.get("params") or None)
            specs, payload = [], []
            for name, value in outputs_of(np, pd, pred):
                spec, raw = encode(np, name, value)
                specs.append(spec)
                payload.append(raw)
            send(out, {"outputs": specs}, b"".join(payload))
        except Exception as e:  # noqa: BLE001 - one bad request must not kill the worker
            send(out, {"error": f"{type(e).__name__}: {e}"})


main()
