#!/bin/sh
# Does an int8 model predict the same on other CPUs? Runs training/cpu_check.py natively and
# under qemu-user emulating other x86-64 CPUs (Debian: apt-get install qemu-user).
# Not for CI: emulation runs ~9 images/s, so it checks the first IMAGES test images only.
#
#   scripts/int8_cpu_check.sh MODEL.onnx [IMAGES] [QEMU_CPU ...]
#   scripts/int8_cpu_check.sh models/fashion-mnist-int8/2/model.onnx 300 EPYC-Rome max
#
# Each run prints the CPUID flags that onnxruntime dispatches on (as the emulated CPU reports
# them), the accuracy with that CPU's integer kernels and as float QDQ, and where they differ.
# qemu 7.2's TCG emulates AVX2 but no AVX-512 and no AVX-VNNI: it drops those flags with a
# warning (-cpu max, -cpu EPYC-Rome,+avx-vnni), so on an AVX2 host it cannot show a VNNI
# kernel. On a VNNI host, `-cpu EPYC-Rome` shows the AVX2 kernels next to the native VNNI ones.
set -eu
model=${1:?usage: $0 MODEL.onnx [IMAGES] [QEMU_CPU ...]}
images=${2:-300}
[ $# -ge 2 ] && shift 2 || shift $#
cpus=${*:-EPYC-Rome max}
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
status=0

echo "== native: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
"$python" -m training.cpu_check "$model" --images "$images" || status=1
for cpu in $cpus; do
    echo "== qemu-x86_64 -cpu $cpu"
    # TCG's "doesn't support requested feature" warnings say which flags it dropped: keep them.
    qemu-x86_64 -cpu "$cpu" "$python" -m training.cpu_check "$model" --images "$images" || status=1
done
exit $status
