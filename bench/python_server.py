"""The prediction server a Python user would write: FastAPI + uvicorn,
Pillow to decode, numpy to normalise, onnxruntime to infer. Side (b) of
bench/serve-throughput.sh; never part of the product.

It does the work semiclass-serve does for one raw-body request: check the
bearer token (hashed, constant-time compare), decode the image (EXIF
orientation applied), resize the shorter side and center-crop (timm's
evaluation recipe), normalise, run the same ONNX graph with the same
threads, and answer the top k classes as JSON.

Run: uvicorn python_server:app --workers N, with BENCH_ONNX, BENCH_SIZE,
BENCH_THREADS and BENCH_TOKEN set.
"""

import hashlib
import hmac
import io
import os

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, HTTPException, Request
from PIL import Image, ImageOps

SIZE = int(os.environ["BENCH_SIZE"])
# timm: resize to size / 0.875, then crop size (224 -> 256 -> 224).
RESIZE = int(SIZE / 0.875) if SIZE >= 128 else SIZE
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
TOKEN_SHA256 = hashlib.sha256(os.environ["BENCH_TOKEN"].encode()).digest()

options = ort.SessionOptions()
options.intra_op_num_threads = int(os.environ["BENCH_THREADS"])
options.inter_op_num_threads = 1
options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
session = ort.InferenceSession(
    os.environ["BENCH_ONNX"], options, providers=["CPUExecutionProvider"]
)
CLASSES = [f"class {i}" for i in range(session.get_outputs()[0].shape[1] or 1000)]

app = FastAPI()


def authorized(request: Request) -> bool:
    given = request.headers.get("authorization", "")
    token = given.removeprefix("Bearer ").encode()
    return hmac.compare_digest(hashlib.sha256(token).digest(), TOKEN_SHA256)


def preprocess(data: bytes) -> np.ndarray:
    image = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    width, height = image.size
    scale = RESIZE / min(width, height)
    size = (round(width * scale), round(height * scale))
    image = image.resize(size, Image.BILINEAR)
    left, top = round((size[0] - SIZE) / 2), round((size[1] - SIZE) / 2)
    image = image.crop((left, top, left + SIZE, top + SIZE))
    pixels = (np.asarray(image, np.float32) / 255.0 - MEAN) / STD
    return pixels.transpose(2, 0, 1)[None]


def top_k(logits: np.ndarray, k: int) -> list:
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    best = np.argsort(-probabilities)[:k]
    return [
        {"class_id": int(i), "class_name": CLASSES[i], "score": float(probabilities[i])}
        for i in best
    ]


@app.post("/v1/models/{model_id}/predict")
async def predict(model_id: str, request: Request, topk: int = 5):
    if not authorized(request):
        raise HTTPException(status_code=401, detail="unauthorized")
    data = await request.body()
    try:
        tensor = preprocess(data)
    except Exception as error:  # noqa: BLE001 - any bad image is a 422
        raise HTTPException(status_code=422, detail=str(error)) from error
    logits = session.run(None, {session.get_inputs()[0].name: tensor})[0][0]
    return {"model": model_id, "predictions": top_k(logits, topk)}
