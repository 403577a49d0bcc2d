"""Drives a semiclass server with the Triton / KServe v2 Python client
(`tritonclient[http]`, in the dev venv), as a user of that ecosystem would,
and prints what it got as one JSON document for the Rust test to check.

Usage: tritonclient_check.py HOST:PORT TOKEN MODEL IMAGE_FILE SIZE
"""

import json
import sys

import numpy as np
import tritonclient.http as httpclient


def main():
    url, token, model, image_file, size = sys.argv[1:6]
    size = int(size)
    auth = {"Authorization": f"Bearer {token}"}

    def headers():
        # A fresh dict per call: the client writes its binary-data header
        # (Inference-Header-Content-Length) into the dict it is given.
        return dict(auth)

    client = httpclient.InferenceServerClient(url=url)
    report = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(model, headers=headers()),
        "metadata": client.get_model_metadata(model, headers=headers()),
    }
    image = np.array([open(image_file, "rb").read()] * 2, dtype=np.object_)
    # Image files, sent as binary data (the client's default).
    files = httpclient.InferInput("image", [2], "BYTES")
    files.set_data_from_numpy(image)
    result = client.infer(model, [files], headers=headers())
    report["binary"] = result.as_numpy("probabilities").tolist()
    # The same as JSON (base64 text), the output as JSON, plus the 2 best classes.
    files = httpclient.InferInput("image", [2], "BYTES")
    files.set_data_from_numpy(
        np.array([__import__("base64").b64encode(b) for b in image], dtype=np.object_),
        binary_data=False,
    )
    outputs = [httpclient.InferRequestedOutput("probabilities", binary_data=False)]
    result = client.infer(model, [files], outputs=outputs, headers=headers())
    report["json"] = result.as_numpy("probabilities").tolist()
    outputs = [httpclient.InferRequestedOutput("probabilities", class_count=2)]
    result = client.infer(model, [files], outputs=outputs, headers=headers())
    report["classification"] = [
        [c.decode() for c in row] for row in result.as_numpy("probabilities")
    ]
    # A preprocessed tensor through the model's own FP32 input.
    name = report["metadata"]["inputs"][1]["name"]
    tensor = httpclient.InferInput(name, [1, 3, size, size], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 3, size, size), dtype=np.float32))
    result = client.infer(model, [tensor], headers=headers())
    report["zeros"] = result.as_numpy("probabilities").tolist()
    # A wrong request: the client raises with the server's message.
    wrong = httpclient.InferInput("pixels", [1], "BYTES")
    wrong.set_data_from_numpy(image[:1])
    try:
        client.infer(model, [wrong], headers=headers())
        report["wrong"] = None
    except httpclient.InferenceServerException as e:
        report["wrong"] = e.message()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
