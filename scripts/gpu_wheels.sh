#!/usr/bin/env bash
# The wheels an offline GPU machine lacks, into .whl/ (git-ignored), for scripts/gpu_session.sh to install there.
# Run from the project's root on a machine with the package registries:
#
#     bash scripts/gpu_wheels.sh        # ../shared/offline-gpu/wheels.sh's kit (when present), then DeepSpeed's
#
# DeepSpeed (the gpu-check's ZeRO-2 row) publishes only a source archive, so its wheel is built here with no ops
# compiled (DS_BUILD_OPS=0): pure Python, for any Python 3. ZeRO-2 with Trainer's own AdamW needs none of its ops.
# Of its dependencies the GPU machine's image lacks hjson and pydantic (the device tool's KINDS.md lists what it
# holds: einops, msgpack, ninja, numpy, packaging, psutil, py-cpuinfo, tqdm are there): they come as CPython 3.12
# manylinux wheels, pydantic with its compiled core and a typing_extensions new enough for it. Versions are those
# of constraints.txt. About 5 MB on top of the kit's 26 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
kit=../shared/offline-gpu/wheels.sh
if [ -f "$kit" ]; then bash "$kit"; else echo "no $kit: only DeepSpeed's wheels are added"; fi
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
ver() {  # the constraints.txt pin of a package, or fail loudly
  grep -i "^$1==" constraints.txt | head -1 | grep . || { echo "constraints.txt pins no $1" >&2; exit 1; }
}
plat=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
python3 -m pip download -q --no-deps "${plat[@]}" -d .whl \
  "$(ver hjson)" "$(ver pydantic)" "$(ver pydantic_core)" "$(ver annotated-types)" "$(ver typing-inspection)" \
  "$(ver typing_extensions)"
DS_BUILD_OPS=0 python3 -m pip wheel -q --no-deps -w .whl "$(ver deepspeed)"
du -sh .whl
