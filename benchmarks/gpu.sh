#!/usr/bin/env bash
# The GPU check, as run on the lent H100 machine (see ../shared/docs/gpu.md for how the wheels
# travel): install the carried wheels, then the same benchmark as on the CPU, with DEVICE=cuda.
# Writes $OUT/gpu-results.md. Usage there: bash benchmarks/gpu.sh /tmp/w
set -euo pipefail
wheels=${1:-/tmp/w}
root=$(pwd)
(cd "$wheels" && cat part0* > onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl && sha256sum -c ort.sha256)
python3 -m pip install -q --no-index --no-deps --target /tmp/site "$wheels"/*.whl
export PYTHONPATH=/tmp/site:$root PATH=$wheels:$PATH FASHION_MNIST_DIR=$wheels/fmnist PYTHONUNBUFFERED=1
# wrk when it runs there (carry /usr/bin/wrk and its libluajit-5.1.so.2 in the wheels folder), else hey.
export LD_LIBRARY_PATH=$wheels${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
generator=hey
if (wrk -v 2>&1 || true) | grep -q '^wrk '; then generator=wrk; fi  # wrk -v prints its version and exits 1
nvidia-smi -L
python3 -c "import onnxruntime as o; o.preload_dlls(); print(o.__version__, o.get_available_providers())"
# 16 cores: 8 workers × 2 intra-op threads; merged batches up to 512 images on the GPU. The naive
# baseline gets as many sync workers as the service has workers.
WEB_CONCURRENCY=8 THREADS=32 MAX_BATCH_SIZE=512 \
  timeout 420 python3 -m benchmarks --device cuda --repository models --duration 4 --concurrency 32,128 \
  --load-generator "$generator" --naive-workers 8 --out "${OUT:-/tmp}/gpu-results.md"
