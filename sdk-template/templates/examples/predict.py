#!/usr/bin/env python3
"""Classify images with the {{arch}} model of package {{package_id}}
through the SDK's C library (ctypes; standard library only).

    python3 examples/predict.py image.jpg [more images...] [--topk 5]

Activate the package first (bin/infer activate, see README.md). As a
library: `with Model() as model: model.predict(open("a.jpg", "rb").read())`.
"""

import argparse
import ctypes
import pathlib
import sys

PACKAGE = pathlib.Path(__file__).resolve().parent.parent


class Prediction(ctypes.Structure):
    _fields_ = [
        ("class_id", ctypes.c_uint32),
        ("score", ctypes.c_float),
        ("name", ctypes.c_char_p),
    ]


def load_library(package=PACKAGE):
    """The SDK library of `package` with its functions declared."""
    lib = ctypes.CDLL(str(pathlib.Path(package) / "lib" / "libsemiclass_sdk.so"))
    lib.semiclass_version.restype = ctypes.c_char_p
    lib.semiclass_last_error.restype = ctypes.c_char_p
    lib.semiclass_open.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
    lib.semiclass_predict.argtypes = [
        ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t,
        ctypes.POINTER(Prediction), ctypes.POINTER(ctypes.c_size_t),
    ]
    lib.semiclass_num_classes.argtypes = [ctypes.c_void_p]
    lib.semiclass_num_classes.restype = ctypes.c_size_t
    lib.semiclass_close.argtypes = [ctypes.c_void_p]
    return lib


class SdkError(RuntimeError):
    """A refusal or failure of the SDK, with its status code."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class Model:
    """The package's model, opened after its files and license are checked."""

    def __init__(self, package=PACKAGE, activation_dir=None):
        self._lib = load_library(package)
        self._handle = ctypes.c_void_p()
        activation = None if activation_dir is None else str(activation_dir).encode()
        self._check(self._lib.semiclass_open(str(package).encode(), activation, ctypes.byref(self._handle)))

    def _check(self, status):
        if status != 0:
            raise SdkError(status, self._lib.semiclass_last_error().decode())

    @property
    def num_classes(self):
        return self._lib.semiclass_num_classes(self._handle)

    def predict(self, image_bytes, top_k=5):
        """[(class_id, name, score)] of the `top_k` best classes, best first."""
        out = (Prediction * top_k)()
        count = ctypes.c_size_t()
        self._check(self._lib.semiclass_predict(
            self._handle, image_bytes, len(image_bytes), top_k, out, ctypes.byref(count)))
        return [(p.class_id, p.name.decode(), p.score) for p in out[:count.value]]

    def close(self):
        if self._handle:
            self._lib.semiclass_close(self._handle)
            self._handle = ctypes.c_void_p()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+")
    parser.add_argument("--topk", type=int, default=5)
    parser.add_argument("--package", default=str(PACKAGE))
    args = parser.parse_args()
    try:
        model = Model(args.package)
    except SdkError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    failed = 0
    with model:
        for path in args.images:
            try:
                with open(path, "rb") as f:
                    top = model.predict(f.read(), args.topk)
            except (OSError, SdkError) as err:
                print(f"error: {path}: {err}", file=sys.stderr)
                failed = 1
                continue
            print(path)
            for rank, (class_id, name, score) in enumerate(top, 1):
                print(f"  {rank}. {name} (class {class_id}) {score:.4f}")
    return failed


if __name__ == "__main__":
    sys.exit(main())
